//go:build !unix

package sink

import (
	"errors"
	"io/fs"
)

func permanentOSError(err error) bool { return errors.Is(err, fs.ErrPermission) }

func syncDir(dir string) error { return nil }

func lockFile(path, name, holder string) (Lease, error) {
	return nil, errors.ErrUnsupported
}
