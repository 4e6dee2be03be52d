package gateway

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// logFile is the access log file (log.file). It rotates itself once it
// passes maxSize (the file becomes FILE.1, replacing an older FILE.1) and
// reopens its path on SIGUSR1, after logrotate or another tool has moved
// it away. One mutex around each write is all the hot path pays: the slog
// handler above it already serializes whole lines.
type logFile struct {
	path    string
	maxSize int64
	// report tells the operational log why a rotation failed; writes then
	// go on to the file already open, so no access line is lost.
	report func(msg string, err error)

	mu      sync.Mutex // guards f, size and failing
	f       *os.File
	size    int64
	failing bool // a rotation failed; report only the first failure
}

// logFileMode lets the owner write and its group (log readers) read; the
// lines hold client IPs and paths, not for everyone.
const logFileMode = 0o640

// openLogFile opens (appending) or creates path.
func openLogFile(path string, maxSize int64, report func(string, error)) (*logFile, error) {
	l := &logFile{path: path, maxSize: maxSize, report: report}
	f, size, err := l.open()
	if err != nil {
		return nil, err
	}
	l.f, l.size = f, size
	return l, nil
}

func (l *logFile) open() (*os.File, int64, error) {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, logFileMode)
	if err != nil {
		return nil, 0, fmt.Errorf("opening log file: %w", err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("opening log file: %w", err)
	}
	return f, info.Size(), nil
}

// Write appends one log line, rotating first when the line would take the
// file past maxSize. A line is never split across two files.
func (l *logFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.maxSize > 0 && l.size > 0 && l.size+int64(len(p)) > l.maxSize {
		if err := l.rotate(); err != nil {
			if !l.failing {
				l.report("rotating the access log; writing on to the current file", err)
			}
			l.failing = true
		} else {
			l.failing = false
		}
	}
	n, err := l.f.Write(p)
	l.size += int64(n)
	return n, err
}

// rotate renames the file to FILE.1 and starts a new one. l.mu is held.
func (l *logFile) rotate() error {
	if err := os.Rename(l.path, l.path+".1"); err != nil {
		return fmt.Errorf("renaming log file: %w", err)
	}
	// Even if the new file cannot be opened, the old descriptor keeps
	// working (it now writes to FILE.1).
	return l.reopenLocked()
}

// Reopen closes the file and opens its path again, creating it if it was
// moved away. If the path cannot be opened, the old file stays in use.
func (l *logFile) Reopen() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reopenLocked()
}

func (l *logFile) reopenLocked() error {
	f, size, err := l.open()
	if err != nil {
		return err
	}
	old := l.f
	l.f, l.size = f, size
	if err := old.Close(); err != nil {
		return fmt.Errorf("closing the previous log file: %w", err)
	}
	return nil
}

// Close closes the file; later writes fail.
func (l *logFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}

// openAccessLog sets up where access lines go: log.file when set, written
// whatever log.level says (the level is for gatehouse's own log), else the
// operational logger on stderr.
func (g *Gateway) openAccessLog() (*slog.Logger, error) {
	l := g.cfg.Log
	if l.File == "" {
		return g.logger, nil
	}
	report := func(msg string, err error) { g.logger.Error(msg, "file", l.File, "error", err) }
	f, err := openLogFile(l.File, int64(l.MaxSize), report)
	if err != nil {
		return nil, fmt.Errorf("log.file: %w", err)
	}
	g.accessFile = f
	return NewLogger(f, config.Log{Format: l.Format, Level: "info"}), nil
}

// reopenLogs answers SIGUSR1: the access log file is opened again by its
// path, so a log rotator can move it away first.
func (g *Gateway) reopenLogs() {
	if g.accessFile == nil {
		g.logger.Info("SIGUSR1: no log.file to reopen")
		return
	}
	if err := g.accessFile.Reopen(); err != nil {
		g.logger.Error("reopening the access log; writing on to the old file", "file", g.accessFile.path, "error", err)
		return
	}
	g.logger.Info("access log reopened", "file", g.accessFile.path)
}

// closeAccessLog closes the access log file, if any, once nothing writes
// to it anymore.
func (g *Gateway) closeAccessLog() {
	if g.accessFile == nil {
		return
	}
	if err := g.accessFile.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		g.logger.Warn("closing the access log", "file", g.accessFile.path, "error", err)
	}
}

var _ io.Writer = (*logFile)(nil)
