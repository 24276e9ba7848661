//go:build unix

package sink

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

// permanentOSError reports filesystem errors that retrying cannot fix. A
// rename across file systems (EXDEV) fails the same way every time; the one
// that places a file is copied instead (placeAcross), so this one is of the
// tool's own folders, split over mounts.
func permanentOSError(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) ||
		errors.Is(err, syscall.EROFS) || errors.Is(err, fs.ErrPermission) ||
		errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.EISDIR) ||
		errors.Is(err, syscall.EXDEV)
}

// tryLock takes an exclusive flock on f without waiting; held reports
// that someone else has it.
func tryLock(f *os.File) (held bool, err error) {
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return true, nil
	}
	return false, err
}
