package manifest

import (
	"errors"
	"strings"
)

// Sentinel errors classify an *Error; test for them with errors.Is.
var (
	// ErrCorrupt: a manifest file is not what this package writes (JSON
	// that is not a manifest, a malformed record in the middle of a
	// journal), or a snapshot cannot be read at all (empty, NUL bytes,
	// truncated JSON) and Options.Rebuild did not let Open rebuild it.
	ErrCorrupt = errors.New("manifest is corrupt")
	// ErrVersion: a manifest file was written in a format newer than this
	// build reads.
	ErrVersion = errors.New("manifest format is newer than supported")
	// ErrDestination: the manifest records a different destination than the
	// one it was opened for.
	ErrDestination = errors.New("manifest belongs to another destination")
	// ErrClosed: Record, Remove or Flush was called after Close.
	ErrClosed = errors.New("manifest is closed")
)

// Error reports a manifest file that cannot be used, or a store operation
// that failed. Its message names the file, the problem and what to do.
type Error struct {
	// Location is the file concerned: the store's location joined with
	// the file name (e.g. "s3://b/p/.artifact-sync/manifest.json").
	Location string
	// Problem says what is wrong and, where the user can act, what to do.
	Problem string
	// Err is one of ErrCorrupt, ErrVersion, ErrDestination, or the store's
	// own error for I/O failures.
	Err error
}

func (e *Error) Error() string {
	return "manifest " + e.Location + ": " + e.Problem
}

func (e *Error) Unwrap() error { return e.Err }

// location joins a store's location and a file name for messages.
func location(st Store, name string) string {
	s := st.String()
	if s == "" {
		return name
	}
	return strings.TrimSuffix(s, "/") + "/" + name
}

// Hints appended to problems the user must resolve by hand.
const (
	hintCorrupt = "move it aside (the next pull then starts a new manifest and transfers everything again) or restore it from a backup"
	hintVersion = "upgrade artifact-sync"
)
