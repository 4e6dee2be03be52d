// Package fleet runs gatehouse as one of a fleet sharing storage.etcd:
// the fleet's shared config document at <prefix>config (a [Source] that
// watches it and applies each new revision, and [PushFile], [Pull] and
// [History] behind `gatehouse config push|pull|history`), and the
// registry of instances under <prefix>instances/ ([Status] behind
// `gatehouse fleet status` and the admin endpoint's /fleet).
package fleet

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gatehouse-proxy/gatehouse/admin"
	"github.com/gatehouse-proxy/gatehouse/config"
	"github.com/gatehouse-proxy/gatehouse/tlsmgr/etcdstore"
)

// ConfigKey is the etcd key of the fleet's shared document.
func ConfigKey(prefix string) string { return prefix + "config" }

// Document is one revision of the fleet's shared document.
type Document struct {
	// Data is the YAML as written.
	Data []byte
	// Revision is the etcd revision that wrote it (its ModRevision); 0
	// when no document exists.
	Revision int64
	// Version counts the writes of the key since it was created.
	Version int64
}

// Digest is the first 12 hex digits of the document's SHA-256, to tell
// revisions apart at a glance.
func (d Document) Digest() string {
	sum := sha256.Sum256(d.Data)
	return hex.EncodeToString(sum[:6])
}

// Name names the revision in problems and logs: the key and revision,
// as "/gatehouse/config@42".
func (d Document) name(prefix string) string {
	return ConfigKey(prefix) + "@" + strconv.FormatInt(d.Revision, 10)
}

// Pull reads the current document; its Revision is 0 when none exists.
func Pull(ctx context.Context, client *clientv3.Client, prefix string) (Document, error) {
	resp, err := client.Get(ctx, ConfigKey(prefix))
	if err != nil {
		return Document{}, fmt.Errorf("reading %s from etcd: %w", ConfigKey(prefix), err)
	}
	if len(resp.Kvs) == 0 {
		return Document{}, nil
	}
	kv := resp.Kvs[0]
	return Document{Data: kv.Value, Revision: kv.ModRevision, Version: kv.Version}, nil
}

// ConflictError refuses a push because the document changed since the
// revision the push was based on.
type ConflictError struct {
	// Base is the revision the push expected; Current the one in etcd.
	Base, Current int64
}

func (e *ConflictError) Error() string {
	if e.Base == 0 {
		return fmt.Sprintf("the fleet's config was written meanwhile (now revision %d); pull it, merge your change and push again, or push --force to replace it", e.Current)
	}
	return fmt.Sprintf("the fleet's config changed since revision %d (now revision %d); pull it, merge your change and push again, or push --force to replace it", e.Base, e.Current)
}

// Push writes data as the document if its revision is still base (0: if
// none exists), and returns the new revision; otherwise it writes nothing
// and returns a [*ConflictError]. force writes whatever is there.
func Push(ctx context.Context, client *clientv3.Client, prefix string, data []byte, base int64, force bool) (int64, error) {
	key := ConfigKey(prefix)
	txn := client.Txn(ctx)
	if !force {
		// An absent key's ModRevision compares as 0.
		txn = txn.If(clientv3.Compare(clientv3.ModRevision(key), "=", base))
	}
	resp, err := txn.Then(clientv3.OpPut(key, string(data))).Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return 0, fmt.Errorf("writing %s to etcd: %w", key, err)
	}
	if !resp.Succeeded {
		var current int64
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			current = kvs[0].ModRevision
		}
		return 0, &ConflictError{Base: base, Current: current}
	}
	return resp.Header.Revision, nil
}

// History returns up to n revisions of the document, newest first, as far
// back as etcd keeps them: its compaction drops older ones.
func History(ctx context.Context, client *clientv3.Client, prefix string, n int) ([]Document, error) {
	key := ConfigKey(prefix)
	var out []Document
	var opts []clientv3.OpOption
	for len(out) < n {
		resp, err := client.Get(ctx, key, opts...)
		if errors.Is(err, rpctypes.ErrCompacted) {
			break
		}
		if err != nil {
			return out, fmt.Errorf("reading the history of %s from etcd: %w", key, err)
		}
		if len(resp.Kvs) == 0 {
			break
		}
		kv := resp.Kvs[0]
		out = append(out, Document{Data: kv.Value, Revision: kv.ModRevision, Version: kv.Version})
		if kv.Version <= 1 {
			break // the key's first write since it was created
		}
		opts = []clientv3.OpOption{clientv3.WithRev(kv.ModRevision - 1)}
	}
	return out, nil
}

// pulledHeader is the first line `config pull` prints; push reads the
// revision a pulled file was based on from it.
var pulledHeader = regexp.MustCompile(`^# gatehouse fleet config revision ([0-9]+)\b[^\n]*\n`)

// Pulled returns the document as `gatehouse config pull` prints it: a
// first line naming its revision, which [PushFile] takes as the revision
// an edited copy is based on, then the document without any such line of
// an earlier pull.
func Pulled(d Document) []byte {
	header := fmt.Sprintf("# gatehouse fleet config revision %d (gatehouse config pull; push compares with it)\n", d.Revision)
	return append([]byte(header), pulledHeader.ReplaceAll(d.Data, nil)...)
}

// baseOf returns the revision named by data's pulled header, if any.
func baseOf(data []byte) (int64, bool) {
	m := pulledHeader.FindSubmatch(data)
	if m == nil {
		return 0, false
	}
	rev, err := strconv.ParseInt(string(m[1]), 10, 64)
	return rev, err == nil
}

// PushResult is what [PushFile] did.
type PushResult struct {
	// Base is the revision the push was compared with; Revision the one it
	// wrote.
	Base, Revision int64
	// Unchanged reports that the document already was file's content, so
	// nothing was written.
	Unchanged bool
}

// PushFile validates the document in file as each instance would run it,
// with local (an instance's own file, as [config.Load] returns it) for
// the local keys, and writes it as the fleet's document. It is compared
// with the revision of file's pulled header, if it has one (it was edited
// from `config pull`), else with the revision read before validating; a
// document changed since is a [*ConflictError] unless force. Validation
// problems are [config.Problems] with file's lines, and nothing is
// written.
func PushFile(ctx context.Context, local *config.Config, file string, force bool) (PushResult, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return PushResult{}, fmt.Errorf("reading %s: %w", file, err)
	}
	f, err := Dial(local)
	if err != nil {
		return PushResult{}, err
	}
	defer f.Close()
	current, err := f.Pull(ctx)
	if err != nil {
		return PushResult{}, err
	}
	res := PushResult{Base: current.Revision}
	if rev, ok := baseOf(data); ok {
		res.Base = rev
	}
	if _, err := config.ParseShared(file, data, local); err != nil {
		return res, err
	}
	if bytes.Equal(pulledHeader.ReplaceAll(current.Data, nil), pulledHeader.ReplaceAll(data, nil)) && (res.Base == current.Revision || force) {
		res.Revision, res.Unchanged = current.Revision, true
		return res, nil
	}
	res.Revision, err = Push(ctx, f.client, f.prefix, data, res.Base, force)
	return res, err
}

// Fleet is a connection to a fleet's etcd, for the commands that read and
// write its document and registry.
type Fleet struct {
	client *clientv3.Client
	prefix string
}

// Dial connects to the etcd of local's storage.etcd.
func Dial(local *config.Config) (*Fleet, error) {
	if local.StorageEtcd == nil {
		return nil, errors.New("the config has no storage.etcd: a fleet lives in etcd")
	}
	client, err := etcdstore.NewClient(local.StorageEtcd)
	if err != nil {
		return nil, err
	}
	return &Fleet{client: client, prefix: local.StorageEtcd.Prefix}, nil
}

// Close closes the connection.
func (f *Fleet) Close() error { return f.client.Close() }

// Pull reads the fleet's document (see [Pull]).
func (f *Fleet) Pull(ctx context.Context) (Document, error) { return Pull(ctx, f.client, f.prefix) }

// History reads its last n revisions (see [History]).
func (f *Fleet) History(ctx context.Context, n int) ([]Document, error) {
	return History(ctx, f.client, f.prefix, n)
}

// Status reads the registry (see [Status]).
func (f *Fleet) Status(ctx context.Context) (admin.FleetStatus, error) {
	return Status(ctx, f.client, f.prefix)
}

// Forget removes a gone instance (see [Forget]).
func (f *Fleet) Forget(ctx context.Context, name string) error {
	return Forget(ctx, f.client, f.prefix, name)
}
