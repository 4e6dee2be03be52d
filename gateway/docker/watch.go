package docker

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"
)

// Reconnecting: a lost event stream (engine restart, a proxy cutting idle
// streams) is retried forever, with a backoff that doubles up to
// maxBackoff, and each reconnect resynchronises from a full list.
var (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// resyncEvery reopens a quiet event stream with a full list: a stream a
// proxy stalls without closing would otherwise go unnoticed, and a missed
// event would stay missed.
var resyncEvery = 5 * time.Minute

// errResync ends a session for the periodic resync; it is no outage.
var errResync = errors.New("periodic resync")

// Watch implements gateway.Source: it follows the engine's event stream
// and reports each change, until ctx is done. While the engine is away the
// last known containers stay (Load keeps serving them); the change of
// state is logged once each way.
func (s *Source) Watch(ctx context.Context, log *slog.Logger, changed func(string)) {
	s.mu.Lock()
	s.log, s.changed = log, changed
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.scheduleExpiry(time.Time{})
		s.changed = nil
		s.mu.Unlock()
	}()
	backoff := minBackoff
	var st linkState
	for {
		synced, err := s.session(ctx, log, changed, &st)
		if ctx.Err() != nil {
			return
		}
		if synced {
			backoff = minBackoff
		}
		if errors.Is(err, errResync) {
			continue
		}
		if !st.down {
			st.down = true
			log.Error("docker engine unreachable; keeping the last known container routes and retrying", "endpoint", s.d.Endpoint, "error", err)
		} else {
			log.Debug("docker engine still unreachable", "error", err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// linkState is what Watch logged of the engine's state, so each change is
// logged once.
type linkState struct {
	connected bool // a session got its list once
	down      bool // the engine's being away was logged
}

// session negotiates the API version, opens the event stream, lists every
// container and follows events until the stream ends. synced reports
// whether the full list succeeded.
func (s *Source) session(ctx context.Context, log *slog.Logger, changed func(string), st *linkState) (synced bool, err error) {
	version, err := s.client.negotiate(ctx)
	if err != nil {
		return false, err
	}
	f := s.filters()
	// The stream opens before the list, so nothing that happens between
	// the two is missed, and from the last event seen, so the kill events
	// of containers being stopped while it was closed still drain them.
	s.mu.Lock()
	since := s.lastEvent
	s.mu.Unlock()
	next, closeStream, err := s.client.events(ctx, f, since)
	if err != nil {
		return false, err
	}
	defer closeStream()
	stop := context.AfterFunc(ctx, closeStream)
	defer stop()
	if err := s.resync(ctx, f); err != nil {
		return false, err
	}
	switch {
	case st.down:
		log.Info("docker engine reachable again; routes resynchronised", "endpoint", s.d.Endpoint, "api_version", version)
	case !st.connected:
		log.Info("docker engine connected", "endpoint", s.d.Endpoint, "api_version", version)
	default:
		log.Debug("docker: periodic resync", "api_version", version)
	}
	st.down, st.connected = false, true
	changed("docker: full container list")
	var resync atomic.Bool
	timer := time.AfterFunc(resyncEvery, func() {
		resync.Store(true)
		closeStream()
	})
	defer timer.Stop()
	for {
		e, err := next()
		if err != nil {
			if resync.Load() {
				return true, errResync
			}
			return true, err
		}
		if e.TimeNano > 0 {
			s.mu.Lock()
			s.lastEvent = e.TimeNano
			s.mu.Unlock()
		}
		if what := s.handle(ctx, e); what != "" {
			changed("docker: " + what)
		}
	}
}

// filters selects container events and, unless exposed_by_default, only
// containers labelled gatehouse.enable=true, on the engine's side.
func (s *Source) filters() map[string][]string {
	f := map[string][]string{}
	if !s.d.ExposedByDefault {
		f["label"] = []string{labelEnable + "=true"}
	}
	return f
}

// resync replaces what is known with a full list, inspecting each
// container.
func (s *Source) resync(ctx context.Context, f map[string][]string) error {
	list, err := s.client.list(ctx, f)
	if err != nil {
		return err
	}
	fresh := make(map[string]*container, len(list))
	for _, c := range list {
		ci, err := s.client.inspect(ctx, c.ID)
		switch {
		case isNotFound(err):
			continue // removed since the list
		case ctx.Err() != nil:
			return err
		case err != nil:
			// One container the engine cannot describe keeps what was
			// known of it; the others go on.
			s.mu.Lock()
			old := s.containers[c.ID]
			s.log.Warn("docker: inspecting a container during a resync; keeping what was known of it", "id", shortID(c.ID), "error", err)
			s.mu.Unlock()
			if old == nil {
				continue
			}
			ci = old
		}
		fresh[ci.ID] = ci
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.containers = fresh
	for id := range s.draining {
		if c := fresh[id]; c == nil || !c.State.Running {
			delete(s.draining, id)
		}
	}
	return nil
}

// handle applies one event and says what changed, or "" for an event
// that changes nothing.
func (s *Source) handle(ctx context.Context, e event) string {
	if e.Type != "" && e.Type != "container" || e.Actor.ID == "" {
		return ""
	}
	id := e.Actor.ID
	action, _, _ := strings.Cut(e.Action, ":") // "health_status: healthy"
	name := e.Actor.Attributes["name"]
	what := action + " " + name
	switch action {
	case "kill", "stop":
		// Drained before it stops answering: docker stop sends kill
		// (SIGTERM) first, and the container may take seconds to exit.
		sig, named := e.Actor.Attributes["signal"]
		if action == "kill" && named && !stopSignal(sig) {
			return ""
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		var until time.Time
		if action == "kill" && !named {
			// podman's kill events name no signal, so a HUP asking
			// for a reload looks like a TERM. Drain for as long as a
			// stop would take (the stop timeout, then SIGKILL): a
			// container still running after that was not stopping,
			// and serves again. The end counts from the event, which
			// a reopened stream may give again.
			at := time.Now()
			if e.TimeNano > 0 {
				at = time.Unix(0, e.TimeNano)
			}
			until = at.Add(stopTimeout(s.containers[id]) + stopGrace)
		}
		cur, draining := s.draining[id]
		switch {
		case !draining:
		case cur.IsZero():
			return ""
		case !until.IsZero():
			// A further kill naming no signal: the drain lasts longer.
			// While the old one runs, the Load at its end schedules the
			// new end; one that ended is a new drain.
			s.draining[id] = maxTime(cur, until)
			if time.Now().Before(cur) {
				return ""
			}
			return what
		}
		s.draining[id] = until
		return what
	case "destroy", "remove":
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.containers, id)
		delete(s.draining, id)
		return what
	case "create", "start", "restart", "die", "pause", "unpause", "health_status", "rename", "update", "oom":
	default:
		return ""
	}
	c, err := s.client.inspect(ctx, id)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case isNotFound(err):
		delete(s.containers, id)
		delete(s.draining, id)
	case err != nil:
		// The stream goes on; the next resync corrects what is missed.
		s.log.Warn("docker: inspecting a container after an event", "id", shortID(id), "event", action, "error", err)
		return ""
	default:
		s.containers[id] = c
		if action == "start" || action == "restart" || action == "unpause" || !c.State.Running {
			delete(s.draining, id)
		}
	}
	return what
}

// stopGrace is how long past its stop timeout a container killed with a
// signal the event does not name may take to die before it is taken to
// be running on.
var stopGrace = 5 * time.Second

// stopTimeout is how long the engine gives c to stop before SIGKILL: its
// own StopTimeout, else the engines' default of 10 s.
func stopTimeout(c *container) time.Duration {
	if c != nil && c.Config.StopTimeout != nil && *c.Config.StopTimeout >= 0 {
		return time.Duration(*c.Config.StopTimeout) * time.Second
	}
	return 10 * time.Second
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// stopSignal reports whether a kill event's signal stops the container
// (docker kill -s HUP, a reload, does not).
func stopSignal(sig string) bool {
	switch strings.TrimPrefix(strings.ToUpper(sig), "SIG") {
	case "", "TERM", "15", "KILL", "9", "INT", "2", "QUIT", "3":
		return true
	}
	return false
}
