package tlsmgr

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// TestClosingTransport checks that closing the engine's life cancels a
// request in flight, whose own context would let it wait, and that a
// request made afterwards never reaches the server.
func TestClosingTransport(t *testing.T) {
	var hits atomic.Int32
	arrived := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path == "/quick" {
			io.WriteString(w, "quick")
			return
		}
		arrived <- struct{}{}
		<-r.Context().Done() // a CA that never answers
	}))
	defer srv.Close()

	life, closing := context.WithCancelCause(context.Background())
	client := &http.Client{Transport: &closingTransport{life: life, base: srv.Client().Transport}}

	// A body is read after RoundTrip returns: it must still be readable.
	resp, err := client.Get(srv.URL + "/quick")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(body) != "quick" {
		t.Fatalf("quick request: got %q, %v; want \"quick\"", body, err)
	}

	failed := make(chan error, 1)
	go func() {
		resp, err := client.Get(srv.URL + "/stuck")
		if err == nil {
			resp.Body.Close()
		}
		failed <- err
	}()
	<-arrived
	closing(errEngineClosed)
	select {
	case err := <-failed:
		if err == nil {
			t.Error("request in flight at close: got a response, want an error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("request in flight at close was not cancelled within 5s")
	}

	before := hits.Load()
	if _, err := client.Get(srv.URL + "/quick"); !errors.Is(err, errEngineClosed) {
		t.Errorf("request after close: got %v, want %v", err, errEngineClosed)
	}
	if got := hits.Load(); got != before {
		t.Errorf("request after close reached the server (%d hits, want %d)", got, before)
	}
}
