package sink

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrShortStream is matched by the error of a Put whose stream ended before
// PutOptions.Size bytes.
var ErrShortStream = errors.New("stream shorter than declared size")

// ErrLongStream is matched by the error of a Put whose stream went on past
// PutOptions.Size bytes.
var ErrLongStream = errors.New("stream longer than declared size")

// ErrPathConflict is matched by the error of a write whose way into the
// destination is blocked for that key alone: a symbolic link or a file
// where a folder is needed, or a folder where the file goes. It is not
// permanent for the destination (other keys are fine), but retrying the
// same key cannot fix it.
var ErrPathConflict = errors.New("path conflict at the destination")

// PermanentError marks an error that retrying the same operation cannot
// fix: a full or read-only disk, permission denied, a missing bucket,
// rejected credentials, an invalid key. Its message is that of Err.
type PermanentError struct {
	Err error
}

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// IsPermanent reports whether err, or any error it wraps, is a
// *PermanentError, so the caller should stop retrying.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// LockedError is returned by Locker.Lock when someone else holds the lock.
type LockedError struct {
	Name   string
	Holder string    // who holds it, e.g. "host ci-7 pid 1234 run 5f3a"; may be empty
	Since  time.Time // when they took it; zero if unknown
}

func (e *LockedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "lock %q is held", e.Name)
	if e.Holder != "" {
		fmt.Fprintf(&b, " by %s", e.Holder)
	} else {
		b.WriteString(" by another run")
	}
	if !e.Since.IsZero() {
		fmt.Fprintf(&b, " since %s", e.Since.UTC().Format(time.RFC3339))
	}
	b.WriteString("; wait for it to finish")
	return b.String()
}
