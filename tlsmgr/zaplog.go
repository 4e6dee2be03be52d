package tlsmgr

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// newZapLogger returns a zap logger, for certmagic only, that writes to
// logger. zap's own zapslog goes the other way (slog onto zap), hence this
// small core. zap types never leave tlsmgr.
//
// certmagic logs every lock, challenge and ARI refresh at info; gatehouse
// reports obtained, renewed and failed certificates itself (see
// certmagicEngine.onEvent), so certmagic's info lines are demoted to debug
// and its errors to warnings (they repeat what our own error line says).
func newZapLogger(logger *slog.Logger) *zap.Logger {
	return zap.New(&slogCore{h: logger.Handler()})
}

// newWatchingZapLogger is newZapLogger that also calls jobFailed with the
// names and the error of each renewal by certmagic's maintenance that
// fails. certmagic reports a renewal failing at the CA with a cert_failed
// event, but one failing before (its storage check, its lock) or after
// (saving the new Certificate) only with this log line, "job failed"
// with the error "[NAMES] CAUSE", however loud the log is set.
func newWatchingZapLogger(logger *slog.Logger, jobFailed func(names []string, cause string)) *zap.Logger {
	return zap.New(&slogCore{h: logger.Handler(), jobFailed: jobFailed})
}

// slogCore is a zapcore.Core writing to a slog.Handler. It is immutable:
// With returns a new core.
type slogCore struct {
	h         slog.Handler
	fields    []zapcore.Field
	jobFailed func(names []string, cause string)
}

// jobFailedMsg is the message of certmagic's job manager for a job that
// returned an error.
const jobFailedMsg = "job failed"

// parseRenewalJobError splits the error of a failed renewal job,
// "[a.test b.test] cause", into its names and cause.
func parseRenewalJobError(s string) (names []string, cause string, ok bool) {
	rest, found := strings.CutPrefix(s, "[")
	if !found {
		return nil, "", false
	}
	list, cause, found := strings.Cut(rest, "] ")
	if !found || strings.TrimSpace(list) == "" {
		return nil, "", false
	}
	return strings.Fields(list), cause, true
}

var _ zapcore.Core = (*slogCore)(nil)

func slogLevel(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.InfoLevel:
		return slog.LevelDebug
	case l <= zapcore.ErrorLevel:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func (c *slogCore) Enabled(l zapcore.Level) bool {
	// zap asks before it builds an entry: a watched one must be built
	// however quiet the log.
	return c.logs(l) || c.jobFailed != nil && l == zapcore.ErrorLevel
}

// logs reports whether entries at l reach the slog handler.
func (c *slogCore) logs(l zapcore.Level) bool {
	return c.h.Enabled(context.Background(), slogLevel(l))
}

func (c *slogCore) With(fields []zapcore.Field) zapcore.Core {
	return &slogCore{h: c.h, fields: append(slices.Clip(c.fields), fields...), jobFailed: c.jobFailed}
}

func (c *slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.logs(e.Level) || c.watched(e) {
		return ce.AddCore(e, c)
	}
	return ce
}

// watched reports whether e goes to jobFailed.
func (c *slogCore) watched(e zapcore.Entry) bool {
	return c.jobFailed != nil && e.Message == jobFailedMsg
}

func (c *slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fields {
		f.AddTo(enc)
	}
	if c.watched(e) {
		if msg, ok := enc.Fields["error"].(string); ok {
			if names, cause, ok := parseRenewalJobError(msg); ok {
				c.jobFailed(names, cause)
			}
		}
	}
	if !c.logs(e.Level) {
		return nil
	}
	t := e.Time
	if t.IsZero() {
		t = time.Now()
	}
	r := slog.NewRecord(t, slogLevel(e.Level), e.Message, 0)
	// certmagic names some loggers ".acme_client" (an empty parent name
	// plus a suffix); trim the stray dots.
	if name := strings.Trim(e.LoggerName, "."); name != "" {
		r.AddAttrs(slog.String("logger", "certmagic."+name))
	} else {
		r.AddAttrs(slog.String("logger", "certmagic"))
	}
	keys := make([]string, 0, len(enc.Fields))
	for k := range enc.Fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		r.AddAttrs(slog.Any(k, enc.Fields[k]))
	}
	return c.h.Handle(context.Background(), r)
}

func (c *slogCore) Sync() error { return nil }
