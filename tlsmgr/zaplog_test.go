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

// TestZapLoggerWatchesFailedRenewalJobs checks a failed renewal job of
// certmagic's maintenance reaches jobFailed with its names and cause even
// when the log is too quiet to show it, and that other lines do not.
func TestZapLoggerWatchesFailedRenewalJobs(t *testing.T) {
	type call struct {
		names []string
		cause string
	}
	var calls []call
	var buf bytes.Buffer
	quiet := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelError}))
	zl := newWatchingZapLogger(quiet, func(names []string, cause string) { calls = append(calls, call{names, cause}) })
	zl.Error(jobFailedMsg, zap.Error(errors.New("[a.test b.test] failed storage check: read-only file system")))
	zl.Error(jobFailedMsg, zap.Error(errors.New("no names here")))
	zl.Error("could not get certificate", zap.Error(errors.New("[c.test] boom")))
	if len(calls) != 1 || strings.Join(calls[0].names, ",") != "a.test,b.test" || calls[0].cause != "failed storage check: read-only file system" {
		t.Errorf("jobFailed calls: got %+v, want one for a.test,b.test with the cause", calls)
	}
	if buf.Len() != 0 {
		t.Errorf("warnings logged at slog level error: got %q, want nothing", buf.String())
	}
}
