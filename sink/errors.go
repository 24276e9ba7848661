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
// where a folder is needed, a folder where the file goes, or a name longer
// than the file system allows. It is not
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
	Dest   string    // the destination, as the user named it; may be empty
	Holder string    // who holds it, e.g. "host ci-7 pid 1234 run 5f3a"; may be empty
	PID    int       // the holder's process ID; 0 if its record does not say
	Host   string    // the holder's host name; may be empty
	Since  time.Time // when they took it; zero if unknown
	// Until is when the holder's lease runs out unless renewed (S3); zero
	// for a lock that goes with the holder's process (a directory's flock).
	Until time.Time
}

func (e *LockedError) Error() string {
	dest := e.Dest
	if dest == "" {
		dest = "the destination"
	}
	var who []string
	if e.PID > 0 {
		who = append(who, fmt.Sprintf("pid %d", e.PID))
	}
	if e.Host != "" {
		who = append(who, "host "+e.Host)
	}
	if len(who) == 0 && e.Holder != "" {
		who = append(who, e.Holder) // a record without them, of an older version
	}
	if !e.Since.IsZero() {
		who = append(who, "since "+e.Since.UTC().Format(time.RFC3339))
	}
	if !e.Until.IsZero() {
		who = append(who, "lease until "+e.Until.UTC().Format(time.RFC3339))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s is being written by another artifact-sync", dest)
	if len(who) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(who, ", "))
	}
	if e.Until.IsZero() {
		// The kernel drops a flock when its process exits, killed or not.
		b.WriteString(": wait for it to finish, or stop it: its lock goes with its process, so a run started after that goes ahead")
	} else {
		// A running holder renews its lease every few seconds; one that
		// was killed elsewhere leaves it to run out.
		fmt.Fprintf(&b, ": wait for it to finish; if it was stopped without releasing the lock, run again after %s, when its lease runs out", e.Until.UTC().Format(time.RFC3339))
	}
	return b.String()
}
