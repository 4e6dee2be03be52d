package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/gatehouse-proxy/gatehouse/tlsmgr"
)

// migrateWriteWindow is how long each line of a migration's answer may
// take to write: a migration at a slow pace runs for hours, longer than
// any one write timeout of the server, so each line extends the deadline.
const migrateWriteWindow = 10 * time.Minute

// migrate runs a migration for the duration of the request: the client
// going away (an interrupted `gatehouse migrate`) stops it, and the
// progress in storage lets the next call resume it. Options the migration
// refuses are answered 400, a migration already running 409, before any
// line; after the first line, errors come as a last line.
func (a *api) migrate(w http.ResponseWriter, r *http.Request) {
	if a.opts.Migrate == nil {
		writeError(w, http.StatusServiceUnavailable, errors.New("certificate migration is not available"))
		return
	}
	var opts tlsmgr.MigrateOptions
	body := http.MaxBytesReader(w, r.Body, maxBody)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&opts); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("decoding the request body: %w", err))
		return
	}
	// Read the body to its end: only then does the server watch the
	// connection, and cancel the request's context when the client goes.
	_, _ = io.Copy(io.Discard, body)
	a.opts.Logger.InfoContext(r.Context(), "migrating certificates on request", "to", opts.To, "from", opts.From,
		"hosts", opts.Hosts, "rate", opts.Rate, "dry_run", opts.DryRun, "revoke_old", opts.RevokeOld, "via", "admin")
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	started := false
	line := func(l MigrateLine) {
		if !started {
			started = true
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
		}
		_ = rc.SetWriteDeadline(time.Now().Add(migrateWriteWindow))
		if enc.Encode(l) == nil {
			_ = rc.Flush()
		}
	}
	res, err := a.opts.Migrate(r.Context(), opts, func(ev tlsmgr.MigrationEvent) { line(MigrateLine{Event: &ev}) })
	if err != nil {
		a.opts.Logger.WarnContext(r.Context(), "migrating certificates on request", "to", opts.To, "error", err)
		if !started {
			status := http.StatusBadGateway
			switch {
			case errors.Is(err, tlsmgr.ErrMigrateOptions):
				status = http.StatusBadRequest
			case errors.Is(err, tlsmgr.ErrMigrationRunning):
				status = http.StatusConflict
			}
			writeError(w, status, err)
			return
		}
		line(MigrateLine{Error: err.Error()})
		return
	}
	line(MigrateLine{Result: &res})
}
