package sink

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

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

// lockFile takes an exclusive LockFileEx lock on f, the lock file at path,
// without waiting; f is closed unless the lease is returned. Windows drops
// the lock when the process dies, like flock(2).
func lockFile(f *os.File, path, name, holder string) (Lease, error) {
	ol := &windows.Overlapped{Offset: uint32(lockOffset & 0xffffffff), OffsetHigh: uint32(lockOffset >> 32)}
	err := windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, ol)
	if errors.Is(err, windows.ERROR_LOCK_VIOLATION) || errors.Is(err, windows.ERROR_IO_PENDING) {
		var rec lockRecord
		b, _ := io.ReadAll(io.LimitReader(f, 4096))
		_ = json.Unmarshal(b, &rec)
		f.Close()
		return nil, &LockedError{Name: name, Holder: rec.Holder, Since: rec.Since}
	}
	if err != nil {
		f.Close()
		return nil, localErr(fmt.Errorf("lock %s: %w", path, err))
	}
	b, _ := json.Marshal(lockRecord{Holder: holder, Since: time.Now().UTC()})
	if err := f.Truncate(0); err == nil {
		f.WriteAt(b, 0)
	}
	return &localLease{f: f, lost: make(chan struct{})}, nil
}
