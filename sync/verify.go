package sync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"strings"
	"time"

	"github.com/artifact-sync/artifact-sync/manifest"
	"github.com/artifact-sync/artifact-sync/sink"
)

// VerifyOptions configure Verify.
type VerifyOptions struct {
	Manifest manifest.Store // nil: ManifestPrefix in dest
	// Download re-reads and hashes every object even where the sink knows its
	// SHA-256 (S3 metadata); local objects are always re-read.
	Download bool
	Log      *slog.Logger
}

// VerifyResult reports what Verify found. Its own fields say it plainly:
// Checked entries of the manifest, of which Intact are as recorded, and the
// keys that are Missing, Changed or Unexpected (at the destination, not in
// the manifest); Problems counts the three lists. The embedded Summary keeps
// the counts cli.md names for every --json summary (Skipped = Intact,
// Failed = missing + changed, Failures their details).
type VerifyResult struct {
	Summary
	Checked    int      `json:"checked"`
	Intact     int      `json:"intact"`
	Problems   int      `json:"problems"`
	Missing    []string `json:"missing"`
	Changed    []string `json:"changed"`
	Unexpected []string `json:"unexpected"`
}

// Verify checks every manifest entry against dest: present, same size, same
// SHA-256; and lists objects in dest the manifest does not know. It does not
// change the manifest.
//
// A destination without a manifest is an error matching ErrNoManifest.
func Verify(ctx context.Context, dest sink.Sink, opts VerifyOptions) (*VerifyResult, error) {
	res := &VerifyResult{Missing: []string{}, Changed: []string{}, Unexpected: []string{}}
	res.Destination = dest.String()
	res.Failures = []Failure{}
	store, recorded := manifestStore(dest, opts.Manifest)
	names, err := store.List(ctx)
	if err != nil {
		return res, fmt.Errorf("reading the manifest at %s: %w", store, err)
	}
	if len(names) == 0 {
		return res, fmt.Errorf("%w at %s: pull to this destination first, or point --manifest at it", ErrNoManifest, store)
	}
	m, err := manifest.Open(ctx, store, manifest.Options{Destination: recorded})
	if err != nil {
		return res, err
	}
	// A pull writing the destination now would show as false problems
	// (files it has written but not yet recorded, files still to come).
	var how sink.NameFolding // found out only where verify may write
	if locker, ok := dest.(sink.Locker); ok {
		lease, err := locker.Lock(ctx, sink.DefaultLockName, holder("verify"), 2*time.Minute)
		var locked *sink.LockedError
		switch {
		case errors.As(err, &locked):
			who := locked.Holder
			if who == "" {
				who = "another run"
			}
			return res, &explainedError{fmt.Sprintf("a pull is writing %s (%s): run verify when it has finished", dest, who), err}
		case err != nil:
			// A destination this user may read but not write (an S3
			// policy, a read-only mount) is verified without the lock.
			if opts.Log != nil {
				opts.Log.Debug("verifying without the lock", "error", err)
			}
		default:
			defer func() {
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
				defer cancel()
				_ = lease.Release(rctx)
			}()
			how = nameFolding(ctx, dest, opts.Log)
		}
	}
	known := make(map[string]bool, m.Len())
	for ent := range m.Entries() {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		known[how.Key(ent.Key)] = true
		res.Artifacts++
		problem, err := check(ctx, dest, ent, opts.Download)
		if err != nil {
			return res, err
		}
		if problem == "" {
			res.Skipped++ // intact
			res.Bytes += ent.Size
			continue
		}
		res.Failed++
		res.Failures = append(res.Failures, Failure{JobNumber: ent.JobNumber, NodeIndex: ent.NodeIndex, Path: ent.Path, Error: problem})
		if problem == "missing" {
			res.Missing = append(res.Missing, ent.Key)
		} else {
			res.Changed = append(res.Changed, ent.Key)
		}
	}
	for info, err := range dest.List(ctx, "") {
		if err != nil {
			return res, err
		}
		if known[how.Key(info.Key)] || info.Key == StateDir || strings.HasPrefix(info.Key, StateDir+"/") {
			continue
		}
		res.Unexpected = append(res.Unexpected, info.Key)
	}
	res.Checked, res.Intact = res.Artifacts, res.Skipped
	res.Problems = len(res.Missing) + len(res.Changed) + len(res.Unexpected)
	return res, nil
}

// manifestStore is where dest's manifest lives (given, or ManifestPrefix in
// dest) and the destination it records: manifest.SelfDestination when it
// lives inside dest, so that a copied or moved mirror stays usable.
func manifestStore(dest sink.Sink, given manifest.Store) (manifest.Store, string) {
	if given != nil {
		return given, dest.String()
	}
	return &SinkStore{Sink: dest, Prefix: ManifestPrefix}, manifest.SelfDestination
}

// check compares one entry with the object at its key; it returns a problem
// for the report, or an error that stops the verification.
func check(ctx context.Context, dest sink.Sink, ent manifest.Entry, download bool) (string, error) {
	info, err := dest.Stat(ctx, ent.Key)
	if errors.Is(err, fs.ErrNotExist) {
		return "missing", nil
	}
	if err != nil {
		return "", err
	}
	if info.Size != ent.Size {
		return fmt.Sprintf("changed: size %d, manifest says %d", info.Size, ent.Size), nil
	}
	sum := info.SHA256
	if sum == "" || download {
		rc, err := dest.Open(ctx, ent.Key)
		if errors.Is(err, fs.ErrNotExist) {
			return "missing", nil
		}
		if err != nil {
			return "", err
		}
		h := sha256.New()
		_, err = io.Copy(h, rc)
		rc.Close()
		if err != nil {
			return "", fmt.Errorf("reading %s: %w", ent.Key, err)
		}
		sum = hex.EncodeToString(h.Sum(nil))
	}
	if ent.SHA256 != "" && !strings.EqualFold(sum, ent.SHA256) {
		return fmt.Sprintf("changed: SHA-256 %s, manifest says %s", sum, ent.SHA256), nil
	}
	return "", nil
}
