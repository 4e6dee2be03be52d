package gateway

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// A Source is one place config comes from: the config file (or, on a
// fleet's instance, the file merged with the fleet's shared document:
// package gateway/fleet), or container labels. The Gateway pulls each
// Source's part with Load whenever its Watch says it may have changed, and
// merges the parts in one place ([merge]).
type Source interface {
	// Name names the Source in logs and as the origin of the Sites it
	// gives ("file", "docker", ...).
	Name() string
	// Load returns the Source's current part. The primary Source (the
	// first) returns a whole, valid config; any other returns a config of
	// which only the Sites are used. An error keeps the Source's last good
	// part in force.
	Load(ctx context.Context) (*config.Config, error)
	// Watch calls changed, naming the cause, whenever what Load returns may
	// have changed, until ctx is done. It returns once ctx is done or at
	// once when the Source never changes by itself.
	Watch(ctx context.Context, log *slog.Logger, changed func(trigger string))
}

// Debouncing: a burst of changes (an editor's truncate-write-rename, thirty
// containers started by one compose up) becomes one swap. A change waits
// for sourceQuiet without another, but never longer than sourceMaxDelay,
// so a Source that changes without pause still gets applied.
const (
	sourceQuiet    = 100 * time.Millisecond
	sourceMaxDelay = time.Second
)

// sources runs the Gateway's Sources and applies their merged result.
type sources struct {
	g    *Gateway
	list []Source
	// changed is signalled (never blocking) when some Source's Watch
	// reported a change.
	changed chan struct{}

	dirtyMu sync.Mutex // guards dirty and trigger
	dirty   []bool     // by index in list: Sources whose Watch reported a change
	trigger string     // the latest cause reported

	// mu serializes load-merge-apply rounds (the run loop's and Reload's);
	// it guards parts, failing and conflicts.
	mu sync.Mutex
	// parts holds each Source's last good part, by index in list; nil
	// until one loaded.
	parts []*config.Config
	// failing holds each Source's last load error text, so a Source that
	// keeps failing the same way is logged once per change of state.
	failing []string
	// conflicts holds the host-and-path conflicts logged already, so each
	// is logged once while it lasts.
	conflicts map[conflict]bool

	// quiet and maxDelay are sourceQuiet and sourceMaxDelay (nanoseconds);
	// a test widens them to tell the debounce from a loaded machine's
	// scheduling gaps.
	quiet, maxDelay atomic.Int64
}

func newSources(g *Gateway, list []Source) *sources {
	if len(list) == 0 {
		list = []Source{Static(g.opts.Config)}
	}
	s := &sources{
		g: g, list: list, changed: make(chan struct{}, 1),
		dirty: make([]bool, len(list)),
		parts: make([]*config.Config, len(list)), failing: make([]string, len(list)),
		conflicts: map[conflict]bool{},
	}
	s.parts[0] = g.opts.Config
	s.quiet.Store(int64(sourceQuiet))
	s.maxDelay.Store(int64(sourceMaxDelay))
	return s
}

// notify records a change reported by the Watch of Source i.
func (s *sources) notify(i int, trigger string) {
	s.dirtyMu.Lock()
	s.dirty[i] = true
	s.trigger = trigger
	s.dirtyMu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// run watches every Source and applies their changes until ctx is done,
// then waits for the watches to end.
func (s *sources) run(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	for i, src := range s.list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src.Watch(ctx, s.g.logger.With("source", src.Name()), func(trigger string) { s.notify(i, trigger) })
		}()
	}
	// The primary's part is the start-up config; the others join now.
	if len(s.list) > 1 {
		load := make([]bool, len(s.list))
		for i := range load[1:] {
			load[i+1] = true
		}
		_ = s.round(ctx, "start", load)
	}

	quiet := time.NewTimer(time.Hour)
	quiet.Stop()
	var first time.Time // when the pending change arrived; zero when none is pending
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.g.opts.Reopen:
			s.g.reopenLogs()
		case <-s.changed:
			now := time.Now()
			if first.IsZero() {
				first = now
			}
			quiet.Reset(min(time.Duration(s.quiet.Load()), first.Add(time.Duration(s.maxDelay.Load())).Sub(now)))
		case <-quiet.C:
			first = time.Time{}
			s.dirtyMu.Lock()
			load, trigger := s.dirty, s.trigger
			s.dirty = make([]bool, len(s.list))
			s.dirtyMu.Unlock()
			_ = s.round(ctx, trigger, load)
		}
	}
}

// reloadNow loads every Source at once and applies the result, for
// reloads that want the outcome (the admin endpoint's).
func (s *sources) reloadNow(ctx context.Context, trigger string) error {
	load := make([]bool, len(s.list))
	for i := range load {
		load[i] = true
	}
	return s.round(ctx, trigger, load)
}

// round loads the Sources marked in load, merges every Source's last good
// part and applies the result. A primary that fails to load, or a merged
// config that fails to apply, keeps the running config; a failing
// secondary keeps its last good part.
func (s *sources) round(ctx context.Context, trigger string, load []bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	began := time.Now()
	log := s.g.logger.With("trigger", trigger)
	var primaryErr error
	others := false // whether a secondary Source is loaded this round
	for i, src := range s.list {
		if !load[i] {
			continue
		}
		others = others || i > 0
		part, err := src.Load(ctx)
		if err != nil {
			if i == 0 {
				primaryErr = err
				logLoadError(log, err)
				continue
			}
			if msg := err.Error(); msg != s.failing[i] {
				s.failing[i] = msg
				log.Error("reading a config source; keeping its last good part", "source", src.Name(), "error", err)
			}
			continue
		}
		if i == 0 {
			// Warned once per read of the file, not again at every later
			// Source's change.
			keepRestartOnly(log, s.g.running(), part)
		}
		if i > 0 && s.failing[i] != "" {
			log.Info("config source readable again", "source", src.Name())
		}
		s.failing[i] = ""
		s.parts[i] = part
	}
	if primaryErr != nil && !others {
		return primaryErr
	}
	// A broken file does not hold back the other Sources: they apply on the
	// file's last good part.
	var rest []part
	for i, p := range s.parts[1:] {
		if p != nil {
			rest = append(rest, part{source: s.list[i+1].Name(), cfg: p})
		}
	}
	merged, conflicts := merge(s.parts[0], rest)
	s.logConflicts(log, conflicts)
	if err := s.g.apply(ctx, merged, log); err != nil {
		var problems config.Problems
		switch {
		case errors.As(err, &problems):
			for _, p := range problems {
				log.Error("invalid config; keeping the running one", "problem", p.Error())
			}
		default:
			log.Error("applying config; keeping the running one", "error", err)
		}
		return err
	}
	// What a change costs, Sources' loads to swap: bench/ measures it
	// with many container Routes against few.
	log.Info("config reloaded", "sites", len(merged.Sites), "duration_ms", float64(time.Since(began).Microseconds())/1000)
	return primaryErr
}

// logLoadError logs why the primary Source's config could not be loaded:
// each problem of an invalid file on its own line, with its position.
func logLoadError(log *slog.Logger, err error) {
	var problems config.Problems
	if errors.As(err, &problems) {
		for _, p := range problems {
			log.Error("invalid config; keeping the running one", "problem", p.Error())
		}
		return
	}
	log.Error("loading config; keeping the running one", "error", err)
}

// logConflicts logs each conflict that was not there in the last round.
func (s *sources) logConflicts(log *slog.Logger, cs []conflict) {
	now := make(map[conflict]bool, len(cs))
	for _, c := range cs {
		now[c] = true
		if !s.conflicts[c] {
			log.Warn("a config source routes a host and path that an earlier one serves; the earlier one keeps it",
				"source", c.Source, "host", c.Host, "path", c.Path, "served_by", c.Winner)
		}
	}
	s.conflicts = now
}

// part is one secondary Source's config.
type part struct {
	source string
	cfg    *config.Config
}

// conflict is a Route of Source on Host and Path that Winner already
// serves.
type conflict struct {
	Source, Host, Path, Winner string
}

// merge is the one place config parts meet. The result is primary with
// the Sites of each part added in order of precedence: a host no earlier
// part serves joins as the part's Site; a Route for a host an earlier part
// serves joins that host's Site, unless that Site already has the Route's
// path, which stays with the earlier part and is reported as a conflict.
// primary and the parts are not modified, so a failed apply leaves them
// reusable.
func merge(primary *config.Config, parts []part) (*config.Config, []conflict) {
	if len(parts) == 0 {
		return primary, nil
	}
	out := *primary
	n := len(primary.Sites)
	for _, p := range parts {
		n += len(p.cfg.Sites)
	}
	out.Sites = make([]config.Site, len(primary.Sites), n)
	copy(out.Sites, primary.Sites)
	served := make(map[string]int, n) // lower-cased host → index in out.Sites
	for i, s := range out.Sites {
		for _, h := range s.Hosts {
			served[strings.ToLower(h)] = i
		}
	}
	var conflicts []conflict
	for _, p := range parts {
		for _, s := range p.cfg.Sites {
			// fresh is s.Hosts itself until one is served already: a Site
			// passed on unchanged keeps its slices, which lets the
			// pipeline see it unchanged at the cost of a pointer compare
			// (config.Site.Equal).
			fresh, split := s.Hosts, false
			for k, h := range s.Hosts {
				idx, ok := served[strings.ToLower(h)]
				if !ok {
					if split {
						fresh = append(fresh, h)
					}
					continue
				}
				if !split {
					fresh, split = append([]string(nil), s.Hosts[:k]...), true
				}
				idx = splitHost(&out, served, idx, h)
				site := &out.Sites[idx]
				for _, r := range s.Routes {
					if hasPath(site, r.Path) {
						conflicts = append(conflicts, conflict{Source: cmp.Or(r.Source, p.source), Host: h, Path: routePath(r), Winner: sourceOf(site.Source)})
						continue
					}
					r.Source = cmp.Or(r.Source, p.source)
					site.Routes = append(site.Routes, r)
				}
			}
			if len(fresh) == 0 {
				continue
			}
			s.Hosts = fresh
			s.Source = p.source
			if slices.ContainsFunc(s.Routes, func(r config.Route) bool { return r.Source == "" }) {
				s.Routes = append([]config.Route(nil), s.Routes...)
				for i := range s.Routes {
					// A Source may name a Route's origin more precisely
					// ("docker: web-1 (0123abcd)").
					s.Routes[i].Source = cmp.Or(s.Routes[i].Source, p.source)
				}
			}
			out.Sites = append(out.Sites, s)
			for _, h := range fresh {
				served[strings.ToLower(h)] = len(out.Sites) - 1
			}
		}
	}
	return &out, conflicts
}

// splitHost makes host the only host of a Site, so Routes can join it
// without reaching the other hosts of the Site it shares: the host moves
// to a copy of that Site, appended so the file's Sites keep their indices
// (and their positions for error messages). It returns the index of the
// Site that now serves only host.
func splitHost(out *config.Config, served map[string]int, idx int, host string) int {
	site := out.Sites[idx]
	if len(site.Hosts) == 1 {
		// Routes of a Site the caller may append to must be its own slice.
		out.Sites[idx].Routes = append([]config.Route(nil), site.Routes...)
		return idx
	}
	rest := make([]string, 0, len(site.Hosts)-1)
	for _, h := range site.Hosts {
		if !strings.EqualFold(h, host) {
			rest = append(rest, h)
		}
	}
	out.Sites[idx].Hosts = rest
	alone := site
	alone.Hosts = []string{host}
	alone.Routes = append([]config.Route(nil), site.Routes...)
	out.Sites = append(out.Sites, alone)
	served[strings.ToLower(host)] = len(out.Sites) - 1
	return len(out.Sites) - 1
}

func hasPath(s *config.Site, path string) bool {
	for _, r := range s.Routes {
		if routePath(r) == cleanPath(path) {
			return true
		}
	}
	return false
}

func routePath(r config.Route) string { return cleanPath(r.Path) }

func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	return p
}

func sourceOf(name string) string {
	if name == "" {
		return "file"
	}
	return name
}

// File is the config file as the primary Source: it is read again on
// every signal from Signals (SIGHUP) and, unless NoWatch, whenever the file
// changes.
type File struct {
	// Path is the config file.
	Path string
	// Signals delivers SIGHUP; nil means none.
	Signals <-chan os.Signal
	// NoWatch turns off watching the file; Signals still reload.
	NoWatch bool
}

// fileSettle lets an editor finish writing (truncate, write, rename)
// before the file is read again.
const fileSettle = 250 * time.Millisecond

// Name implements [Source].
func (f *File) Name() string { return "file" }

// Load implements [Source]: it loads and validates the file.
func (f *File) Load(context.Context) (*config.Config, error) { return config.Load(f.Path) }

// Watch implements [Source]. The directory holding the file is watched:
// editors and Kubernetes replace files by rename, which a watch on the file
// itself would miss.
func (f *File) Watch(ctx context.Context, log *slog.Logger, changed func(string)) {
	var events <-chan fsnotify.Event
	if !f.NoWatch {
		w, err := watchFile(f.Path)
		if err != nil {
			log.Warn("not watching the config file; reload with SIGHUP", "file", f.Path, "error", err)
		} else {
			defer w.Close()
			events = w.Events
		}
	}
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	defer settle.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.Signals:
			changed("signal")
		case ev := <-events:
			if sameFile(ev.Name, f.Path) {
				settle.Reset(fileSettle)
			}
		case <-settle.C:
			changed("file change")
		}
	}
}

// Static returns a primary Source that always gives cfg, for a config
// built from flags rather than read from a file.
func Static(cfg *config.Config) Source { return staticSource{cfg} }

type staticSource struct{ cfg *config.Config }

func (s staticSource) Name() string { return "flags" }

func (s staticSource) Load(context.Context) (*config.Config, error) { return s.cfg, nil }

func (s staticSource) Watch(context.Context, *slog.Logger, func(string)) {}

// watchFile watches the directory holding path.
func watchFile(path string) (*fsnotify.Watcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("creating file watcher: %w", err)
	}
	if err := w.Add(filepath.Dir(path)); err != nil {
		w.Close()
		return nil, fmt.Errorf("watching %s: %w", filepath.Dir(path), err)
	}
	return w, nil
}

// sameFile reports whether a watch event concerns path, or the "..data"
// symlink through which Kubernetes swaps mounted ConfigMaps.
func sameFile(name, path string) bool {
	if filepath.Base(name) == "..data" {
		return true
	}
	a, errA := filepath.Abs(name)
	b, errB := filepath.Abs(path)
	return errA == nil && errB == nil && a == b
}
