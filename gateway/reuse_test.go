package gateway

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// Issue 12: a change of one Source's Site leaves the file's unchanged
// Route as it was compiled: its balancer goes on where it was (a Route
// compiled again would start its round robin afresh and pick the same
// Upstream twice in a row).
func TestReloadKeepsUnchangedRoutes(t *testing.T) {
	upstream := func(name string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, name) }))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	a, b := upstream("a"), upstream("b")
	src := newTestSource()
	in, _ := startSources(t, newPorts(t), fmt.Sprintf(`listen: {http: "127.0.0.1:{{HTTP}}", https: "127.0.0.1:{{HTTPS}}"}
admin: off
storage: {{STORAGE}}
sites:
  - hosts: [localhost]
    routes: [{respond: {body: file}}]
  - hosts: [rr.localhost]
    routes: [{upstreams: [%s, %s]}]
`, a, b), src)
	<-src.ready
	c := in.Client(t)
	body := func(url string) string {
		t.Helper()
		_, s := get(t, c, url)
		return s
	}
	waitFor(t, 5*time.Second, func() bool { return body("https://svc.localhost/") == "v0" })
	first := body("https://rr.localhost/")
	for v := 1; v <= 3; v++ {
		src.set(v, nil)
		want := fmt.Sprintf("v%d", v)
		waitFor(t, 5*time.Second, func() bool { return body("https://svc.localhost/") == want })
		got := body("https://rr.localhost/")
		if got == first {
			t.Fatalf("after change %d: rr.localhost answered %q twice in a row: its Route was compiled again", v, got)
		}
		first = got
	}
}
