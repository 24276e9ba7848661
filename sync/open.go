package sync

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/artifact-sync/artifact-sync/manifest"
	"github.com/artifact-sync/artifact-sync/sink"
)

// Destination is where a pull writes or a verify reads, as the command line
// gives it: --to, --manifest and the S3 settings.
type Destination struct {
	To       string // a directory, or s3://bucket/prefix
	Manifest string // where the manifest lives, if not under To: a directory or an s3:// URL
	S3       sink.S3Config

	// MustExist refuses a directory that does not exist (verify).
	MustExist bool
	// DryRun opens a directory that does not exist as an empty one,
	// without creating it.
	DryRun bool

	made string // To, if Open created it
}

// Open opens the destination as a sink and, when --manifest names another
// place, the manifest's store (nil: the manifest lives under the sink).
// Mistakes in what was given (no --to, an unusable URL, a missing
// directory for verify, an unreachable bucket) are UsageErrors.
func (d *Destination) Open(ctx context.Context) (sink.Sink, manifest.Store, error) {
	if d.To == "" {
		return nil, nil, Usagef("--to is required: a directory, or s3://bucket/prefix")
	}
	dest, err := d.open(ctx, d.To)
	if err != nil {
		return nil, nil, err
	}
	var store manifest.Store
	switch {
	case d.Manifest == "":
	case strings.HasPrefix(d.Manifest, "s3://"):
		ms, err := d.open(ctx, d.Manifest)
		if err != nil {
			return nil, nil, err
		}
		store = &SinkStore{Sink: ms}
	default:
		if fi, err := os.Stat(d.Manifest); err == nil && !fi.IsDir() {
			return nil, nil, Usagef("--manifest %s is a file: give a directory (or an s3:// URL) to keep the manifest in", d.Manifest)
		}
		store = dirStore{manifest.DirStore{Dir: d.Manifest}}
	}
	return dest, store, nil
}

func (d *Destination) open(ctx context.Context, loc string) (sink.Sink, error) {
	if strings.HasPrefix(loc, "s3://") {
		cfg := d.S3
		bucket, prefix, err := sink.ParseS3URL(loc)
		if err != nil {
			return nil, &UsageError{err}
		}
		cfg.Bucket, cfg.Prefix = bucket, prefix
		s, err := sink.NewS3(ctx, cfg)
		if err != nil {
			return nil, &UsageError{err}
		}
		if err := s.Check(ctx); err != nil {
			return nil, &UsageError{err}
		}
		return s, nil
	}
	if strings.Contains(loc, "://") {
		return nil, Usagef("--to %s: give a directory or an s3://bucket/prefix URL", loc)
	}
	_, statErr := os.Stat(loc)
	if errors.Is(statErr, fs.ErrNotExist) {
		switch {
		case d.MustExist:
			return nil, Usagef("--to %s does not exist: give the directory a pull wrote to", loc)
		case d.DryRun:
			// An empty destination, which a dry run must not create.
			abs, _ := filepath.Abs(loc)
			return absentDir{sink.NewMemory(), abs}, nil
		}
	}
	s, err := sink.NewLocal(loc)
	if err != nil {
		return nil, &UsageError{err}
	}
	if errors.Is(statErr, fs.ErrNotExist) {
		d.made = loc
	}
	return s, nil
}

// Undo removes the directory that a refused run created (an unknown
// pipeline number, a layout refused by the plan): the tool's own state in
// it, then the directory if nothing else is there, so a refused run
// creates nothing. A directory that was there before is left alone, and so
// must be one whose lock another run holds: it may be that run's.
func (d *Destination) Undo() {
	if d.made == "" {
		return
	}
	os.RemoveAll(filepath.Join(d.made, ".artifact-sync"))
	os.Remove(d.made) // only if empty
}

// absentDir is a destination directory that does not exist yet, for a dry
// run: empty, and named by its path.
type absentDir struct {
	*sink.Memory
	path string
}

func (d absentDir) String() string { return d.path }

// dirStore is the --manifest directory, whose file-system errors read as
// sentences naming the path and the fix, as the destination's do.
type dirStore struct{ manifest.DirStore }

func explainManifest(err error) error { return sink.ExplainFS(err, "--manifest") }

func (d dirStore) ReadFile(ctx context.Context, name string) ([]byte, error) {
	b, err := d.DirStore.ReadFile(ctx, name)
	return b, explainManifest(err)
}

func (d dirStore) WriteFile(ctx context.Context, name string, data []byte) error {
	return explainManifest(d.DirStore.WriteFile(ctx, name, data))
}

func (d dirStore) WriteFileFrom(ctx context.Context, name string, r io.Reader) error {
	return explainManifest(d.DirStore.WriteFileFrom(ctx, name, r))
}

func (d dirStore) OpenFile(ctx context.Context, name string) (io.ReadCloser, error) {
	f, err := d.DirStore.OpenFile(ctx, name)
	return f, explainManifest(err)
}

func (d dirStore) Remove(ctx context.Context, name string) error {
	return explainManifest(d.DirStore.Remove(ctx, name))
}

func (d dirStore) List(ctx context.Context) ([]string, error) {
	names, err := d.DirStore.List(ctx)
	return names, explainManifest(err)
}
