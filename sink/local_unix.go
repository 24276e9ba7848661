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

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}

func lockFile(path, name, holder string) (Lease, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, localErr(fmt.Errorf("lock: %w", err))
	}
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
