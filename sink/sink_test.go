package sink_test

import (
	"bytes"
	"crypto/rand"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/artifact-sync/artifact-sync/sink"
	"github.com/artifact-sync/artifact-sync/sink/sinktest"
)

func TestMemory(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) sink.Sink { return sink.NewMemory() })
}

func TestLocal(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) sink.Sink {
		l, err := sink.NewLocal(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return l
	})
}

func TestS3(t *testing.T) {
	env := sinktest.NewS3Bucket(t)
	sinktest.Run(t, func(t *testing.T) sink.Sink {
		return env.NewS3(t, "run-"+rand.Text()[:8])
	})
}

// TestS3PackagesAreKnown: sinktest.S3Packages names exactly the packages
// whose tests ask for an S3 bucket, so "go test" can say once how many S3
// tests it skipped.
func TestS3PackagesAreKnown(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(mod), "\n")
	module := strings.TrimSpace(strings.TrimPrefix(first, "module"))
	found := map[string]bool{}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, "_test.go") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte("NewS3Bucket(")) {
			rel, _ := filepath.Rel(root, filepath.Dir(p))
			found[path.Join(module, filepath.ToSlash(rel))] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for p := range found {
		got = append(got, strings.TrimSuffix(p, "/."))
	}
	slices.Sort(got)
	want := slices.Sorted(slices.Values(sinktest.S3Packages))
	if !slices.Equal(got, want) {
		t.Errorf("packages whose tests call NewS3Bucket: %q; sinktest.S3Packages says %q", got, want)
	}
}
