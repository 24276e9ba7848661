//go:build !unix

package sink

import (
	"io/fs"
	"os"
)

// dirFDs is the folder cache of dirfd_unix.go; elsewhere files are created
// and moved through os.Root alone.
type dirFDs struct{}

func newDirFDs(*Local) *dirFDs { return &dirFDs{} }

func (*dirFDs) forget(string) {}

func (l *Local) createFile(rel string, perm fs.FileMode) (*os.File, error) {
	return l.root.OpenFile(native(rel), os.O_RDWR|os.O_CREATE|os.O_EXCL, perm)
}

func (l *Local) rename(from, to string) error {
	return l.root.Rename(native(from), native(to))
}
