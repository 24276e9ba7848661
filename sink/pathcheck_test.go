package sink_test

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/artifact-sync/artifact-sync/sink"
)

// CheckPath tells before a write what Put would meet: a file or a link
// where a folder goes, a folder where the file goes; and nothing for a
// key whose folders do not exist yet. It changes nothing.
func TestLocalCheckPath(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "a", "dir"), 0o755)
	os.WriteFile(filepath.Join(dir, "a", "file"), []byte("x"), 0o644)
	l, err := sink.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{ // key -> what the error names; "" for none
		"a/file/inside.txt": filepath.Join(dir, "a", "file"),
		"a/dir":             filepath.Join(dir, "a", "dir"),
		"a/dir/new.txt":     "",
		"a/new/deep/x.txt":  "",
		"b/c.txt":           "",
		"a/file":            "", // a file replaces a file
	}
	if runtime.GOOS != "windows" {
		if err := os.Symlink(t.TempDir(), filepath.Join(dir, "link")); err != nil {
			t.Fatal(err)
		}
		cases["link/x.txt"] = filepath.Join(dir, "link")
	}
	for key, names := range cases {
		err := l.CheckPath(t.Context(), key)
		switch {
		case names == "" && err != nil:
			t.Errorf("CheckPath(%q) = %v, want nil", key, err)
		case names != "" && (!errors.Is(err, sink.ErrPathConflict) || !strings.Contains(err.Error(), names)):
			t.Errorf("CheckPath(%q) = %v, want a path conflict naming %s", key, err, names)
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, "a", "new")); err == nil {
		t.Error("CheckPath made a folder")
	}
}
