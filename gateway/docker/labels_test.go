package docker

import "testing"

func TestAllowed(t *testing.T) {
	patterns := []string{"*.example.com", "example.com", "Exact.Test."}
	for host, want := range map[string]bool{
		"example.com":       true,
		"a.example.com":     true,
		"a.b.example.com":   false, // one label only, as a wildcard certificate
		"*.example.com":     true,
		"exact.test":        true,
		"evil.com":          false,
		"example.com.evil":  false,
		"aexample.com":      false,
		"*.sub.example.com": false,
	} {
		if got := allowed(patterns, host); got != want {
			t.Errorf("allowed(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestVersionNegotiation(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		less bool
	}{{"1.41", "1.44", true}, {"1.44", "1.41", false}, {"1.9", "1.10", true}, {"1.51", "1.51", false}, {"1.51", "2.0", true}} {
		if got := versionLess(tc.a, tc.b); got != tc.less {
			t.Errorf("versionLess(%s, %s) = %v", tc.a, tc.b, got)
		}
	}
	for sig, stops := range map[string]bool{"": true, "15": true, "SIGTERM": true, "KILL": true, "HUP": false, "SIGUSR1": false} {
		if stopSignal(sig) != stops {
			t.Errorf("stopSignal(%q) = %v, want %v", sig, !stops, stops)
		}
	}
}
