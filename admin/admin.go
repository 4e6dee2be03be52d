// Package admin serves gatehouse's local admin endpoint. For now it answers
// health checks; it reads proxy and tlsmgr only through small interfaces
// that the command wires.
package admin

import "net/http"

// Handler returns the admin endpoint's handler: GET /healthz answers 200
// "ok" while the process serves.
func Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Write([]byte("ok\n"))
	})
	return mux
}
