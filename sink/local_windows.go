package sink

import (
	"errors"
	"io/fs"
	"os"

	"golang.org/x/sys/windows"
)

// permanentOSError reports filesystem errors that retrying cannot fix.
func permanentOSError(err error) bool {
	return errors.Is(err, windows.ERROR_DISK_FULL) || errors.Is(err, windows.ERROR_HANDLE_DISK_FULL) ||
		errors.Is(err, windows.ERROR_WRITE_PROTECT) || errors.Is(err, fs.ErrPermission)
}

// lockOffset is where the locked byte lies: far past the holder record, so
// that others can still read who holds the lock.
const lockOffset = 1 << 62

// tryLock takes an exclusive LockFileEx lock on f without waiting; held
// reports that someone else has it. Windows drops the lock when the process
// dies, like flock(2).
func tryLock(f *os.File) (held bool, err error) {
	ol := &windows.Overlapped{Offset: uint32(lockOffset & 0xffffffff), OffsetHigh: uint32(lockOffset >> 32)}
	err = windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, ol)
	if errors.Is(err, windows.ERROR_LOCK_VIOLATION) || errors.Is(err, windows.ERROR_IO_PENDING) {
		return true, nil
	}
	return false, err
}
