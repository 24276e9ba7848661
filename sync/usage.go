package sync

import "fmt"

// UsageError is a mistake in how the tool was called or configured: a flag,
// an argument, a destination that cannot be used as given. The command line
// exits 2 for it; a rerun fails alike until the mistake is fixed.
type UsageError struct{ Err error }

func (u *UsageError) Error() string { return u.Err.Error() }
func (u *UsageError) Unwrap() error { return u.Err }

// Usagef is a UsageError with a formatted message.
func Usagef(format string, args ...any) error {
	return &UsageError{fmt.Errorf(format, args...)}
}

// FailedError says that a run finished but not everything it was to do
// succeeded: some artifacts failed, a flush of the disk failed, or verify
// found problems. Its message says what and what to do; the summary says
// which. The command line exits 1 for it.
type FailedError struct{ Msg string }

func (f *FailedError) Error() string { return f.Msg }
