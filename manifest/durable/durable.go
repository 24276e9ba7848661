// Package durable makes changes to files and folders survive a crash or a
// power cut: the one place where artifact-sync decides how a file or a
// folder is synced, used by the manifest's directory store and by the
// local sink alike.
//
// A rename or a new entry is durable only once the folder that holds it is
// synced, and a new folder only once its own parent is; these helpers do
// both, in that order.
package durable

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Sync flushes f, a file or a folder, to stable storage. A folder that the
// platform or file system cannot sync (EINVAL, ErrUnsupported, or a folder
// that cannot even be opened for it, as on Windows) is as durable as the
// platform makes it, and not an error.
func Sync(f *os.File) error {
	err := f.Sync()
	if err == nil || errors.Is(err, syscall.EINVAL) || errors.Is(err, errors.ErrUnsupported) {
		return nil
	}
	if fi, serr := f.Stat(); serr == nil && fi.IsDir() && errors.Is(err, fs.ErrPermission) {
		return nil
	}
	return fmt.Errorf("sync %s: %w", f.Name(), err)
}

// SyncDir makes the entries of dir (renames, new files and folders)
// durable.
func SyncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		if syncDirUnsupported {
			return nil
		}
		return err
	}
	defer f.Close()
	return Sync(f)
}

// MkdirAll creates dir and any missing parents, like os.MkdirAll, and syncs
// the parent of every folder it creates, so the new folders are still there
// after a power cut.
func MkdirAll(dir string, perm fs.FileMode) error {
	fi, err := os.Stat(dir)
	if err == nil {
		if !fi.IsDir() {
			return &fs.PathError{Op: "mkdir", Path: dir, Err: syscall.ENOTDIR}
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := MkdirAll(parent, perm); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, perm); err != nil {
		if errors.Is(err, fs.ErrExist) {
			if fi, serr := os.Stat(dir); serr == nil && fi.IsDir() {
				return nil
			}
		}
		return err
	}
	return SyncDir(parent)
}

// WriteFile replaces the file at path with data atomically and durably: a
// temporary file beside it is written and synced, renamed over path, and
// the folder synced (created durably first if missing). A reader sees the
// old content or the new, never a mix, whatever happens.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	return WriteFileFrom(path, bytes.NewReader(data), perm)
}

// WriteFileFrom is WriteFile with the content read from r up to io.EOF; if
// r fails, the file at path is left as it was.
func WriteFileFrom(path string, r io.Reader, perm fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	if err := MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		return err
	}
	if err := Sync(f); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	return SyncDir(dir)
}
