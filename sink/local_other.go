//go:build !unix && !windows

package sink

import (
	"errors"
	"io/fs"
	"os"
)

func permanentOSError(err error) bool { return errors.Is(err, fs.ErrPermission) }

func tryLock(f *os.File) (bool, error) { return false, errors.ErrUnsupported }
