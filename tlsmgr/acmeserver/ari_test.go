package acmeserver

import (
	"net/http"
	"strings"
	"testing"
)

// TestRenewalInfoRefused: renewal-info answers a malformed identifier with
// 400 and one of a certificate this server never issued with 404, as
// problem documents.
func TestRenewalInfoRefused(t *testing.T) {
	ca := startCA(t, "ca.localhost", nil, nil)
	base := strings.TrimSuffix(ca.dirURL, "directory") + "renewal-info/"
	for id, want := range map[string]int{
		"garbage":               http.StatusBadRequest,
		"aGVsbG8.AA8":           http.StatusBadRequest, // 0x00 0x0f: not minimal DER
		"aGVsbG8.ASNFZ4mrze8":   http.StatusNotFound,
		"aGVsbG8.!!":            http.StatusBadRequest,
		"aGVsbG8.ASNFZ4mrze8.x": http.StatusBadRequest,
	} {
		resp, err := ca.httpClient().Get(base + id)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("renewal-info/%s: %d %s, want %d problem", id, resp.StatusCode, resp.Header.Get("Content-Type"), want)
		}
	}
}
