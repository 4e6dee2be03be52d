package config_test

import (
	"fmt"

	"github.com/gatehouse-proxy/gatehouse/config"
)

func ExampleParse() {
	cfg, err := config.Parse("gatehouse.yaml", []byte(`
listen: {http: ":8080", https: ":8443"}
sites:
  - hosts: [localhost]
    routes:
      - respond: {body: hello}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	s := cfg.Sites[0]
	fmt.Println(cfg.Listen.HTTPS, s.Routes[0].Path, s.Routes[0].Respond.Status, s.TLS.IssuerFor(s.Hosts[0]))
	// Output: :8443 / 200 internal
}

func ExampleProblems() {
	_, err := config.Parse("gatehouse.yaml", []byte(`
sites:
  - hosts: [example.com:443]
    routes:
      - upstream: [http://127.0.0.1:8080]
`))
	fmt.Println(err)
	// Output:
	// gatehouse.yaml:3:13: sites[0].hosts[0]: "example.com:443" has a port; write "example.com" (ports belong in listen)
	// gatehouse.yaml:5:9: sites[0].routes[0].upstream: unknown key "upstream"; did you mean "upstreams"?
}
