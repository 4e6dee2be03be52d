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

// slogCore is a zapcore.Core writing to a slog.Handler. It is immutable:
// With returns a new core.
type slogCore struct {
	h      slog.Handler
	fields []zapcore.Field
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
	return c.h.Enabled(context.Background(), slogLevel(l))
}

func (c *slogCore) With(fields []zapcore.Field) zapcore.Core {
	return &slogCore{h: c.h, fields: append(slices.Clip(c.fields), fields...)}
}

func (c *slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fields {
		f.AddTo(enc)
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
