//go:build unix

package sink

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
	"time"
)

// permanentOSError reports filesystem errors that retrying cannot fix.
func permanentOSError(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) ||
		errors.Is(err, syscall.EROFS) || errors.Is(err, fs.ErrPermission) ||
		errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.EISDIR)
}

// lockFile takes an exclusive flock on f, the lock file at path, without
// waiting; f is closed unless the lease is returned.
func lockFile(f *os.File, path, name, holder string) (Lease, error) {
	var err error
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if errors.Is(err, syscall.EWOULDBLOCK) {
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
