package tlsmgr

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"go.uber.org/zap"
)

func TestZapLoggerBridgesToSlog(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	zl := newZapLogger(logger).Named("obtain").With(zap.String("identifier", "a.test"))
	zl.Info("acquiring lock")
	zl.Error("could not get certificate", zap.Error(errors.New("boom")))
	out := buf.String()
	for _, want := range []string{
		`level=DEBUG msg="acquiring lock" logger=certmagic.obtain identifier=a.test`,
		`level=WARN msg="could not get certificate" logger=certmagic.obtain error=boom identifier=a.test`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log output lacks %q; got:\n%s", want, out)
		}
	}

	buf.Reset()
	quiet := newZapLogger(slog.New(slog.NewTextHandler(&buf, nil)))
	quiet.Info("chatty")
	if buf.Len() != 0 {
		t.Errorf("info logged at slog level info: got %q, want nothing", buf.String())
	}
}
