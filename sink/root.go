package sink

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// destRoot is the os.Root of a local destination whose errors name the
// full path of what they concern (os.Root's name only the path below it),
// so a message tells the user which file or folder to fix.
type destRoot struct {
	*os.Root
	dir string
}

func (r destRoot) fix(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) && !filepath.IsAbs(pe.Path) {
		pe.Path = filepath.Join(r.dir, pe.Path)
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		if !filepath.IsAbs(le.Old) {
			le.Old = filepath.Join(r.dir, le.Old)
		}
		if !filepath.IsAbs(le.New) {
			le.New = filepath.Join(r.dir, le.New)
		}
	}
	return err
}

func (r destRoot) Lstat(name string) (fs.FileInfo, error) {
	fi, err := r.Root.Lstat(name)
	return fi, r.fix(err)
}

func (r destRoot) Mkdir(name string, perm fs.FileMode) error { return r.fix(r.Root.Mkdir(name, perm)) }

func (r destRoot) Rename(oldname, newname string) error {
	return r.fix(r.Root.Rename(oldname, newname))
}

func (r destRoot) Remove(name string) error { return r.fix(r.Root.Remove(name)) }

func (r destRoot) Open(name string) (*os.File, error) {
	f, err := r.Root.Open(name)
	return f, r.fix(err)
}

func (r destRoot) OpenFile(name string, flag int, perm fs.FileMode) (*os.File, error) {
	f, err := r.Root.OpenFile(name, flag, perm)
	return f, r.fix(err)
}

func (r destRoot) ReadFile(name string) ([]byte, error) {
	b, err := r.Root.ReadFile(name)
	return b, r.fix(err)
}
