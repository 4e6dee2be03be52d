package preflight_test

import (
	"context"
	"fmt"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/preflight"
)

// Example runs the preflight of a config file and prints what would make
// an order fail, as `gatehouse check` does.
func Example() {
	cfg, err := config.Load("/etc/gatehouse/gatehouse.yaml")
	if err != nil {
		return
	}
	report, err := preflight.Run(context.Background(), cfg, preflight.Options{Resolver: "1.1.1.1:53"})
	if err != nil {
		return
	}
	for _, f := range report.Findings {
		if f.Level == preflight.Fail {
			fmt.Printf("%s: %s\n", f.Subject, f.Message)
		}
	}
	fmt.Printf("%d problems\n", report.Failures())
}
