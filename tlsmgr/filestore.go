package tlsmgr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
)

// fileStorage is certmagic's FileStorage with a Certificate's key, chain
// and metadata replaced together or not at all.
//
// FileStorage writes each file atomically (a temporary file in the same
// directory, fsync, rename), but certmagic saves a Certificate as three
// Stores in a row, key first, and when one fails it deletes the ones it
// wrote before (storeTx). During a renewal those are the files of the
// Certificate in use: a disk that filled up between the new key and the
// new chain left the old chain without any key, which a restart cannot
// serve. So the key and the chain are staged in temporary files (written
// and fsynced, so a full disk fails right there) and renamed into place
// only once the metadata, the last of the three, is staged too; storeTx's
// Delete of a staged file removes only the staged copy, and the old three
// stay as they were. The directory is fsynced after the renames, so they
// survive a crash.
//
// Only certmagic saves Certificates this way (key, chain, metadata); a
// copy between storages writes through [certmagic.FileStorage] directly.
//
// It also releases the locks whose lock file could not be removed when
// they were unlocked (the storage was read-only just then): FileStorage
// keeps a lock file fresh for as long as it exists, so such a lock would
// be held for good, and every later renewal of its name would wait on it
// until a restart. Their removal is retried before each lock and write.
type fileStorage struct {
	*certmagic.FileStorage
	// mu guards staged and orphans.
	mu sync.Mutex
	// staged maps the key of a Certificate's key or chain file to the
	// temporary file holding its new value.
	staged map[string]string
	// orphans maps the names of locks unlocked whose lock file is still
	// there to the creation time that file records, so a lock file
	// another process created since (it found ours stale) is left alone.
	orphans map[string]time.Time
}

func newFileStorage(dir string) *fileStorage {
	s := &fileStorage{FileStorage: &certmagic.FileStorage{Path: dir}, staged: map[string]string{}, orphans: map[string]time.Time{}}
	s.removeStaleTemps(time.Now())
	return s
}

// staleTemp is how old a temporary file must be to be removed as left by
// a crash: another process on the same directory may be staging one now.
const staleTemp = time.Hour

// removeStaleTemps removes the temporary files a crash left under
// certificates/ before now-staleTemp; best effort.
func (s *fileStorage) removeStaleTemps(now time.Time) {
	_ = filepath.WalkDir(filepath.Join(s.Path, "certificates"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.Contains(d.Name(), tmpMarker) {
			return nil
		}
		if fi, err := d.Info(); err == nil && now.Sub(fi.ModTime()) > staleTemp {
			_ = os.Remove(p)
		}
		return nil
	})
}

// lockFile is the path of FileStorage's lock file for name.
func (s *fileStorage) lockFile(name string) string {
	return filepath.Join(s.Path, "locks", certmagic.StorageKeys.Safe(name)+".lock")
}

// Unlock implements certmagic.Locker.
func (s *fileStorage) Unlock(ctx context.Context, name string) error {
	err := s.FileStorage.Unlock(ctx, name)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		if created, err := lockCreated(s.lockFile(name)); err == nil {
			s.mu.Lock()
			s.orphans[name] = created
			s.mu.Unlock()
		}
	}
	return err
}

// Lock implements certmagic.Locker.
func (s *fileStorage) Lock(ctx context.Context, name string) error {
	s.releaseOrphans()
	return s.FileStorage.Lock(ctx, name)
}

// TryLock implements certmagic.TryLocker.
func (s *fileStorage) TryLock(ctx context.Context, name string) (bool, error) {
	s.releaseOrphans()
	return s.FileStorage.TryLock(ctx, name)
}

// releaseOrphans removes the lock files left by failed Unlocks.
func (s *fileStorage) releaseOrphans() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, ours := range s.orphans {
		created, err := lockCreated(s.lockFile(name))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			delete(s.orphans, name)
			continue
		case err != nil:
			continue // being rewritten: look again next time
		case !created.Equal(ours):
			delete(s.orphans, name) // another's lock now
			continue
		}
		if err := os.Remove(s.lockFile(name)); err == nil || errors.Is(err, fs.ErrNotExist) {
			delete(s.orphans, name)
		}
	}
}

// lockCreated reads the creation time FileStorage records in a lock file.
func lockCreated(file string) (time.Time, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return time.Time{}, err
	}
	var meta struct {
		Created time.Time `json:"created"`
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		return time.Time{}, fmt.Errorf("reading lock file %s: %w", file, err)
	}
	return meta.Created, nil
}

// tmpMarker is in the name of every temporary file, so one a crash left
// behind is recognisable; a leading dot keeps it out of the inventory.
const tmpMarker = ".gatehouse-tmp-"

// siteFile splits key if it is the key, chain or metadata file of a
// Certificate (certificates/ISSUER/NAME/NAME.{key,crt,json}) into its
// site directory key and extension.
func siteFile(key string) (dir, ext string, ok bool) {
	if !strings.HasPrefix(key, "certificates/") {
		return "", "", false
	}
	dir, file := path.Split(key)
	site := path.Base(dir)
	ext, found := strings.CutPrefix(file, site)
	if !found || (ext != ".key" && ext != ".crt" && ext != ".json") {
		return "", "", false
	}
	return dir, ext, true
}

// Store implements certmagic.Storage.
func (s *fileStorage) Store(ctx context.Context, key string, value []byte) error {
	s.releaseOrphans()
	dir, ext, ok := siteFile(key)
	if !ok {
		return s.FileStorage.Store(ctx, key, value)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ext != ".json" {
		tmp, err := s.writeTemp(key, value)
		if err != nil {
			return err
		}
		if old := s.staged[key]; old != "" {
			_ = os.Remove(old)
		}
		s.staged[key] = tmp
		return nil
	}
	site := path.Base(dir)
	group := []string{path.Join(dir, site+".key"), path.Join(dir, site+".crt")}
	var pending []string
	for _, k := range group {
		if s.staged[k] != "" {
			pending = append(pending, k)
		}
	}
	if len(pending) == 0 {
		// The metadata alone (an ARI update): one atomic file.
		return s.FileStorage.Store(ctx, key, value)
	}
	tmp, err := s.writeTemp(key, value)
	if err != nil {
		// The staged files stay for storeTx's Deletes to drop.
		return err
	}
	s.staged[key] = tmp
	pending = append(pending, key)
	for _, k := range pending {
		if err := os.Rename(s.staged[k], s.Filename(k)); err != nil {
			// Renames within a directory fail only when the file
			// system itself does (I/O error, remounted read-only).
			s.drop(pending)
			return fmt.Errorf("replacing %s: %w", k, err)
		}
		delete(s.staged, k)
	}
	return syncDir(filepath.Dir(s.Filename(key)))
}

// Delete implements certmagic.Storage: a staged file is dropped, and the
// file in place kept.
func (s *fileStorage) Delete(ctx context.Context, key string) error {
	s.mu.Lock()
	tmp := s.staged[key]
	delete(s.staged, key)
	s.mu.Unlock()
	if tmp != "" {
		return os.Remove(tmp)
	}
	return s.FileStorage.Delete(ctx, key)
}

// drop removes the staged files of keys; s.mu is held.
func (s *fileStorage) drop(keys []string) {
	for _, k := range keys {
		if tmp := s.staged[k]; tmp != "" {
			_ = os.Remove(tmp)
			delete(s.staged, k)
		}
	}
}

// writeTemp writes value to a new temporary file beside key's file, mode
// 0600, fsynced, and returns its path; on any error nothing is left.
func (s *fileStorage) writeTemp(key string, value []byte) (_ string, err error) {
	name := s.Filename(key)
	if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+tmpMarker+"*")
	if err != nil {
		return "", fmt.Errorf("writing %s: %w", key, err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return "", fmt.Errorf("writing %s: %w", key, err)
	}
	if _, err := f.Write(value); err != nil {
		return "", fmt.Errorf("writing %s: %w", key, err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("writing %s: %w", key, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("writing %s: %w", key, err)
	}
	return f.Name(), nil
}

// syncDir fsyncs a directory, so the renames in it are on disk.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}

// storageDir returns the directory of a file storage.
func storageDir(store certmagic.Storage) (string, bool) {
	switch s := store.(type) {
	case *fileStorage:
		return s.Path, true
	case *certmagic.FileStorage:
		return s.Path, true
	}
	return "", false
}
