//go:build !unix && !windows

package sink

import (
	"errors"
	"io/fs"
	"os"
)

func permanentOSError(err error) bool { return errors.Is(err, fs.ErrPermission) }

func lockFile(f *os.File, path, name, holder string) (Lease, error) {
	f.Close()
	return nil, errors.ErrUnsupported
}
