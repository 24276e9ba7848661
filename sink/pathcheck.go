package sink

import (
	"context"
	"errors"
	"io/fs"
	"strings"
)

// PathChecker is implemented by sinks whose keys are paths in a tree of
// folders (a directory), where what is already there can block a key: a
// file or a symbolic link where one of its folders goes, or a folder where
// its file goes. Checking before a transfer spares downloading what could
// not be placed.
type PathChecker interface {
	// CheckPath returns an error matching ErrPathConflict, naming what is
	// in the way, when key cannot be written because of what is at the
	// destination; nil when nothing is in its way (a folder that does not
	// exist yet is not in the way). It changes nothing.
	CheckPath(ctx context.Context, key string) error
}

var _ PathChecker = (*Local)(nil)

// CheckPath implements PathChecker with what ensureDir and place would
// refuse: a symbolic link or a file as one of key's folders, a folder at
// key itself.
func (l *Local) CheckPath(ctx context.Context, key string) error {
	if err := l.checkKey(key); err != nil {
		return err
	}
	for i := 0; ; {
		j := strings.IndexByte(key[i:], '/')
		if j < 0 {
			break
		}
		rel := key[:i+j]
		i += j + 1
		l.mu.Lock()
		known := l.dirs[rel]
		l.mu.Unlock()
		if known {
			continue
		}
		fi, err := l.root.Lstat(native(rel))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil // nothing further down exists either
		case err != nil:
			return localErr(err)
		case fi.Mode()&fs.ModeSymlink != 0:
			return l.conflict(rel, "create folder", "a symbolic link is in its place, and artifact-sync never follows links inside the destination: remove the link")
		case !fi.IsDir():
			return l.conflict(rel, "create folder", "a file is in its place: move that file away, or pick another --to or --layout")
		}
	}
	fi, err := l.root.Lstat(native(key))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return localErr(err)
	case fi.IsDir():
		return l.conflict(key, "move a file to", "a folder is in its place: move that folder away, or pick another --to or --layout")
	}
	return nil
}
