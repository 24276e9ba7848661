package manifest_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/artifact-sync/artifact-sync/manifest"
	"github.com/artifact-sync/artifact-sync/manifest/manifesttest"
)

func TestDirStoreConformance(t *testing.T) {
	manifesttest.TestStore(t, func(t *testing.T) manifest.Store {
		// A directory that does not exist yet, as for a first pull.
		return manifest.DirStore{Dir: filepath.Join(t.TempDir(), "dest", ".artifact-sync")}
	})
}

func TestMemStoreConformance(t *testing.T) {
	manifesttest.TestStore(t, func(t *testing.T) manifest.Store { return new(manifest.MemStore) })
}

func TestDirStoreLeavesNoTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	st := manifest.DirStore{Dir: dir}
	ctx := t.Context()
	for range 3 {
		if err := st.WriteFile(ctx, "manifest.json", []byte("{}\n")); err != nil {
			t.Fatal(err)
		}
	}
	// A temporary file left by a crash is not one of the store's files.
	if err := os.WriteFile(filepath.Join(dir, ".tmp-manifest.json-123"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	names, err := st.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names, []string{"manifest.json"}) {
		t.Errorf("List = %q, want [manifest.json]", names)
	}
	des, _ := os.ReadDir(dir)
	if len(des) != 2 {
		t.Errorf("directory holds %d files, want manifest.json and the planted temporary file", len(des))
	}
	fi, err := os.Stat(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("manifest.json mode = %v, want 0644", fi.Mode().Perm())
	}
}

func TestDirStoreRejectsPaths(t *testing.T) {
	dir := t.TempDir()
	st := manifest.DirStore{Dir: filepath.Join(dir, "m")}
	for _, name := range []string{"", ".", "..", "../escape", "a/b", `a\b`, "/abs", "nul\x00"} {
		if err := st.WriteFile(t.Context(), name, []byte("x")); err == nil {
			t.Errorf("WriteFile(%q) succeeded, want an error", name)
		}
		if _, err := st.ReadFile(t.Context(), name); err == nil {
			t.Errorf("ReadFile(%q) succeeded, want an error", name)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "escape")); err == nil {
		t.Errorf("a write escaped the store's directory")
	}
	if got := st.String(); !strings.HasSuffix(got, "m") {
		t.Errorf("String() = %q, want the directory", got)
	}
}
