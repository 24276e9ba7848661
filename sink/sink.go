package sink

import (
	"context"
	"io"
	"iter"
	"time"
)

// Sink is a destination for artifacts: a flat namespace of slash-separated
// keys, each holding an immutable byte string.
//
// Every implementation guarantees:
//
//   - Put is atomic: a reader never sees a partial object at the final key,
//     whether the write succeeds, fails, is cancelled or the process is killed.
//   - A Put whose stream ends before opts.Size bytes (when Size >= 0) fails and
//     leaves nothing at the key; so does a stream that is longer than Size.
//   - Errors for keys that do not exist satisfy errors.Is(err, fs.ErrNotExist).
//   - Keys are checked with ValidKey before any I/O.
type Sink interface {
	// Put writes the bytes of r to key, replacing any object there.
	Put(ctx context.Context, key string, r io.Reader, opts PutOptions) (Info, error)
	// Stat describes the object at key.
	Stat(ctx context.Context, key string) (Info, error)
	// Open opens the object at key for reading.
	Open(ctx context.Context, key string) (io.ReadCloser, error)
	// Delete removes the object at key; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// List yields every object whose key starts with prefix, in no set order.
	List(ctx context.Context, prefix string) iter.Seq2[Info, error]
	// String names the destination for messages (a path or s3://bucket/prefix).
	String() string
}

// PutOptions describe the object being written.
type PutOptions struct {
	// Size is the number of bytes the stream must deliver, or -1 if unknown.
	Size int64
	// Metadata records the object's source (project, job number, node index,
	// path) where the sink can keep it, e.g. as S3 object metadata. Keys
	// should be lowercase ASCII words (S3 metadata names are case-insensitive).
	Metadata map[string]string
	// Validator is an opaque tag of the source version (its ETag, say). A sink
	// that implements Resumer keeps it with an unfinished write so a later run
	// resumes only if the source still has the same validator.
	Validator string
}

// Info describes a stored object.
type Info struct {
	Key  string
	Size int64
	// SHA256 is the lowercase hex SHA-256 of the content when the sink knows
	// it without reading the object (computed during Put, or stored by the
	// server); empty otherwise.
	SHA256  string
	ModTime time.Time
}
