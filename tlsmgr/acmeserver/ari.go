package acmeserver

import (
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"
)

// ACME Renewal Information (RFC 9773), which smallstep's server lacks:
// the directory gains renewalInfo, and GET renewal-info/CERTID answers the
// window of a certificate this server issued from its record.

// ariPath is the path of the renewal-info resource, below the ACME prefix.
const ariPath = "renewal-info"

// ariRetryAfter is how soon a client should ask again (RFC 9773 §4.3
// suggests hours, not days, so a revocation is noticed).
const ariRetryAfter = 6 * time.Hour

// renewalWindow is when a certificate should be renewed: from two thirds
// of its lifetime to five sixths, so a client renewing at any point has a
// sixth of the lifetime left to retry; a revoked certificate's window is
// in the past, so it is replaced at once.
func renewalWindow(notBefore, notAfter time.Time, revoked bool, now time.Time) (start, end time.Time) {
	if revoked {
		return now.Add(-time.Hour), now
	}
	life := notAfter.Sub(notBefore)
	return notBefore.Add(life * 2 / 3), notBefore.Add(life * 5 / 6)
}

// serveDirectory answers the directory as smallstep writes it, with the
// renewalInfo URL added beside its others.
func (s *Server) serveDirectory(w http.ResponseWriter, r *http.Request) {
	rec := httptest.NewRecorder()
	s.router.ServeHTTP(rec, r)
	var dir map[string]any
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &dir) != nil {
		copyRecorded(w, rec, rec.Body.Bytes())
		return
	}
	if nonce, ok := dir["newNonce"].(string); ok && strings.HasSuffix(nonce, "/new-nonce") {
		dir["renewalInfo"] = strings.TrimSuffix(nonce, "new-nonce") + ariPath
	}
	body, err := json.Marshal(dir)
	if err != nil {
		copyRecorded(w, rec, rec.Body.Bytes())
		return
	}
	copyRecorded(w, rec, body)
}

func copyRecorded(w http.ResponseWriter, rec *httptest.ResponseRecorder, body []byte) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.Header().Del("Content-Length")
	w.WriteHeader(rec.Code)
	w.Write(body)
}

// serveRenewalInfo answers GET renewal-info/CERTID for a certificate this
// server issued; CERTID is base64url(AKI) "." base64url(serial's DER
// content).
func (s *Server) serveRenewalInfo(w http.ResponseWriter, r *http.Request, certID string) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		s.problem(w, r, http.StatusMethodNotAllowed, "malformed", "renewal-info takes GET")
		return
	}
	aki, serial, err := parseCertID(certID)
	if err != nil {
		s.problem(w, r, http.StatusBadRequest, "malformed", err.Error())
		return
	}
	rec, revoked, ok, err := s.db.record(serial.String(), s.authDB.IsRevoked)
	switch {
	case err != nil:
		s.logger.WarnContext(r.Context(), "reading an issued certificate's record", "serial", serial.Text(16), "error", err)
		s.problem(w, r, http.StatusInternalServerError, "serverInternal", "reading the certificate's record failed")
		return
	case !ok || (rec.AKI != "" && rec.AKI != aki):
		s.problem(w, r, http.StatusNotFound, "malformed", fmt.Sprintf("certificate %s was not issued by this server", certID))
		return
	}
	start, end := renewalWindow(rec.NotBefore, rec.NotAfter, revoked, time.Now())
	body, _ := json.Marshal(map[string]any{"suggestedWindow": map[string]time.Time{"start": start.UTC(), "end": end.UTC()}})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Retry-After", fmt.Sprint(int(ariRetryAfter.Seconds())))
	w.Write(body)
}

// parseCertID splits an RFC 9773 certificate identifier into its AKI (as
// base64url, the form records keep) and serial.
func parseCertID(id string) (aki string, serial *big.Int, err error) {
	a, sn, ok := strings.Cut(id, ".")
	if !ok || a == "" || sn == "" {
		return "", nil, fmt.Errorf("%q is not a certificate identifier (AKI.SERIAL, base64url)", id)
	}
	akiBytes, err := base64.RawURLEncoding.DecodeString(a)
	if err != nil {
		return "", nil, fmt.Errorf("the identifier's key identifier is not base64url: %w", err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(sn)
	if err != nil || len(raw) == 0 || len(raw) > 126 {
		return "", nil, fmt.Errorf("the identifier's serial is not base64url DER content")
	}
	// The serial is the content of a DER INTEGER: rebuild the element and
	// let asn1 apply DER's rules (no superfluous leading bytes).
	serial = new(big.Int)
	if _, err := asn1.Unmarshal(append([]byte{0x02, byte(len(raw))}, raw...), &serial); err != nil {
		return "", nil, fmt.Errorf("the identifier's serial is not a DER integer: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(akiBytes), serial, nil
}
