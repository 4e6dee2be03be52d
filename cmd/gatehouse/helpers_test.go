package main

import (
	"context"
	"testing"

	"github.com/gatehouse-proxy/gatehouse/gateway/gatewaytest"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/pebbletest"
)

// The harness is gatewaytest's; these names keep the tests short.
type (
	instance    = gatewaytest.Instance
	ports       = gatewaytest.Ports
	syncBuffer  = gatewaytest.SyncBuffer
	adminClient = gatewaytest.AdminClient
)

var (
	newPorts           = gatewaytest.NewPorts
	freePort           = gatewaytest.FreePort
	writeConfig        = gatewaytest.WriteConfig
	get                = gatewaytest.Get
	clientFor          = gatewaytest.ClientFor
	waitFor            = gatewaytest.WaitFor
	waitForCertificate = gatewaytest.WaitForCertificate
	grepLines          = gatewaytest.GrepLines
)

const adminACMEConfig = gatewaytest.AdminACMEConfig

// cli runs gatehouse's command line with args, as main does.
func cli(args []string) gatewaytest.RunFunc {
	return func(ctx context.Context, _ string, env gatewaytest.Env) error {
		return run(ctx, args, &environment{stdout: env.Stdout, stderr: env.Stderr, getenv: func(string) string { return "" }, reload: env.Reload, reopen: env.Reopen})
	}
}

// start runs `gatehouse run -config FILE` in-process on body as FILE and
// waits until the HTTPS Listener completes a handshake for localhost.
func start(t *testing.T, p ports, body string) *instance {
	t.Helper()
	return gatewaytest.Start(t, p, body, func(ctx context.Context, cfgPath string, env gatewaytest.Env) error {
		return cli([]string{"run", "-config", cfgPath})(ctx, cfgPath, env)
	})
}

// startArgs runs the command line args in-process, with cfgPath (may be
// "") and storage as the instance's.
func startArgs(t *testing.T, p ports, storage, cfgPath string, args []string) *instance {
	t.Helper()
	return gatewaytest.StartFile(t, p, storage, cfgPath, cli(args))
}

// startStuckOrder is [gatewaytest.StartStuckOrder] through the CLI.
func startStuckOrder(t *testing.T, p ports, format string, args ...any) (*instance, *pebbletest.CA) {
	t.Helper()
	return gatewaytest.StartStuckOrder(t, p, func(ctx context.Context, cfgPath string, env gatewaytest.Env) error {
		return cli([]string{"run", "-config", cfgPath})(ctx, cfgPath, env)
	}, format, args...)
}
