package sink

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// FSError is an error of the file system at a local destination, told as
// one sentence: what could not be done to which path, the system's reason,
// and what fixes it, e.g. "cannot create folder /x/y: permission denied:
// give the user running artifact-sync write access to /x, or pick another
// --to". It wraps the error it explains, so errors.Is(err, syscall.ENOSPC)
// and errors.As(err, **fs.PathError) hold as before.
type FSError struct {
	Path string // the file or folder the sentence is about
	Err  error
	msg  string
}

func (e *FSError) Error() string { return e.msg }
func (e *FSError) Unwrap() error { return e.Err }

// explainFS is ExplainFS for the destination itself, which --to names.
func explainFS(err error) error { return ExplainFS(err, "--to") }

// ExplainFS is the one place that turns a file-system error (an errno in
// an *fs.PathError or *os.LinkError) into an FSError; flag is the option
// that named the place (--to, --manifest), for the fix "or pick another
// FLAG". An error that holds an FSError already takes its sentence, so the
// context that wrapped it ("put KEY: ...") does not bury it; one whose
// errno has no sentence here, or that names no path, is returned as it is,
// and so is a FlushError, which says what failed in its own words.
func ExplainFS(err error, flag string) error {
	if err == nil || errors.As(err, new(*FlushError)) {
		return err
	}
	if fe := (*FSError)(nil); errors.As(err, &fe) {
		if fe == err {
			return err
		}
		return &FSError{Path: fe.Path, Err: err, msg: fe.msg}
	}
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return err
	}
	op, path := opPath(err)
	if path == "" {
		return err
	}
	// Windows ends its reasons with a period ("Access is denied.").
	what := fmt.Sprintf("cannot %s %s: %s: ", verb(op), path, strings.TrimSuffix(errno.Error(), "."))
	parent := filepath.Dir(path)
	if verb(op) == "look at" {
		parent = path
	}
	var fix string
	switch {
	case errors.Is(errno, syscall.EROFS):
		fix = "remount that file system read-write, or pick another " + flag
	case errors.Is(errno, syscall.ENOSPC):
		fix = "free space on that file system, or pick another " + flag
	case errors.Is(errno, syscall.EDQUOT):
		fix = "free space within the quota of the user running artifact-sync, or raise it, or pick another " + flag
	case errors.Is(errno, syscall.EPERM):
		// Root meets it too: an immutable or append-only folder.
		fix = fmt.Sprintf("give the user running artifact-sync write access to %s (and clear an immutable attribute there: lsattr, chattr -i), or pick another %s", parent, flag)
	case errors.Is(errno, fs.ErrPermission):
		fix = fmt.Sprintf("give the user running artifact-sync write access to %s, or pick another %s", parent, flag)
	case errors.Is(errno, syscall.ENOTDIR):
		if file := fileOnTheWay(path); file != "" {
			fix = fmt.Sprintf("%s is a file where a folder belongs: move it away, or pick another %s", file, flag)
		} else {
			fix = "a file is where a folder belongs on that path: move it away, or pick another " + flag
		}
	case errors.Is(errno, syscall.EISDIR):
		fix = "a folder is where a file belongs: move it away, or pick another " + flag
	case errors.Is(errno, syscall.ENAMETOOLONG):
		fix = fmt.Sprintf("its longest name is %d bytes and the whole path %d, where most file systems allow 255 and 4096: pick a shorter %s, or a --layout that makes shorter paths",
			longestName(path), len(path), flag)
		// A name too long is this key's alone, like a file where a folder
		// belongs: retrying cannot place it, other keys are fine.
		return &FSError{Path: path, Err: &pathConflict{err}, msg: what + fix}
	case errors.Is(errno, syscall.EIO):
		fix = "the disk is failing: check it (dmesg), or pick another " + flag
	default:
		return err
	}
	return &FSError{Path: path, Err: err, msg: what + fix}
}

// pathConflict makes an error match ErrPathConflict as well as what it wraps.
type pathConflict struct{ err error }

func (p *pathConflict) Error() string   { return p.err.Error() }
func (p *pathConflict) Unwrap() []error { return []error{ErrPathConflict, p.err} }

// opPath is the operation and the path of the innermost *fs.PathError or
// *os.LinkError in err (for a rename, its destination).
func opPath(err error) (op, path string) {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Op, pe.Path
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Op, le.New
	}
	return "", ""
}

// verb says in words what a system call was doing.
func verb(op string) string {
	switch op {
	case "mkdir", "mkdirat":
		return "create folder"
	case "open", "openat":
		return "open"
	case "rename", "renameat":
		return "move a file to"
	case "stat", "lstat", "fstat", "statat", "lstatat", "fstatat":
		return "look at"
	case "remove", "unlink", "unlinkat", "rmdir":
		return "remove"
	case "write", "pwrite", "truncate", "ftruncate", "fallocate", "copy_file_range", "chmod", "chtimes":
		return "write"
	case "read", "pread", "readdirent", "readdir":
		return "read"
	case "sync", "fsync", "fdatasync":
		return "flush"
	}
	return op
}

// fileOnTheWay is the first of path's parents that exists and is not a
// folder: what makes the system answer "not a directory".
func fileOnTheWay(path string) string {
	var parents []string
	for p := filepath.Dir(path); p != filepath.Dir(p); p = filepath.Dir(p) {
		parents = append(parents, p)
	}
	for i := len(parents) - 1; i >= 0; i-- {
		fi, err := os.Stat(parents[i])
		if err != nil {
			return ""
		}
		if !fi.IsDir() {
			return parents[i]
		}
	}
	return ""
}

// longestName is the length in bytes of path's longest element.
func longestName(path string) int {
	n := 0
	for _, name := range strings.Split(path, string(filepath.Separator)) {
		n = max(n, len(name))
	}
	return n
}
