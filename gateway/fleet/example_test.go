package fleet_test

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/gateway"
	"github.com/gatehouse-proxy/gatehouse/gateway/fleet"
)

// An instance of a fleet runs its own file and the fleet's shared
// document as one primary Source, as `gatehouse run` does.
func ExampleNewSource() {
	ctx := context.Background()
	path := "/etc/gatehouse/gatehouse.yaml" // with storage.etcd and fleet
	local, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	src, err := fleet.NewSource(local, &gateway.File{Path: path}, fleet.Options{Version: "v1.4.0"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	defer src.Close()
	cfg, err := src.StartConfig(ctx) // the last good document if etcd is down
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	g, err := gateway.New(gateway.Options{Config: cfg, Sources: []gateway.Source{src}, Log: os.Stderr, Fleet: src.Status})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	src.Gateway = g // what the registry reports
	_ = g.Run(ctx)
}

// `gatehouse config push` in code: validate, then write with a
// compare-and-swap.
func ExamplePushFile() {
	local, err := config.Load("/etc/gatehouse/gatehouse.yaml")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	res, err := fleet.PushFile(context.Background(), local, "shared.yaml", false)
	var conflict *fleet.ConflictError
	switch {
	case errors.As(err, &conflict):
		fmt.Println("someone pushed revision", conflict.Current, "since", conflict.Base)
	case err != nil:
		fmt.Println(err) // config.Problems, one per line, or an etcd error
	default:
		fmt.Println("pushed revision", res.Revision)
	}
}
