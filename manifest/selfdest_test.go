package manifest_test

import (
	"errors"
	"testing"

	"github.com/artifact-sync/artifact-sync/manifest"
)

// TestSelfDestination: a manifest kept inside its destination follows it
// when the mirror is copied or moved, whatever path it recorded before; a
// manifest kept elsewhere still refuses another destination.
func TestSelfDestination(t *testing.T) {
	ctx := t.Context()
	record := func(st manifest.Store, dest string) {
		m, err := manifest.Open(ctx, st, manifest.Options{Destination: dest})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Record(manifest.Entry{ID: manifest.ID{Project: "gh/a/b", JobNumber: 1, Path: dest + ".txt"}, Key: "1/0/x", Size: 1}); err != nil {
			t.Fatal(err)
		}
		if err := m.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	old := manifest.DirStore{Dir: t.TempDir()}
	record(old, "/srv/big2") // written by an older run, with the path
	m, err := manifest.Open(ctx, old, manifest.Options{Destination: manifest.SelfDestination})
	if err != nil {
		t.Fatalf("the manifest of a copied mirror: %v", err)
	}
	m.Close(ctx)
	self := manifest.DirStore{Dir: t.TempDir()}
	record(self, manifest.SelfDestination)
	if _, err := manifest.Open(ctx, self, manifest.Options{Destination: "/anywhere"}); err != nil {
		t.Errorf("a manifest recording itself, opened for a path: %v", err)
	}
	if _, err := manifest.Open(ctx, old, manifest.Options{Destination: "/srv/other"}); !errors.Is(err, manifest.ErrDestination) {
		t.Errorf("a manifest recording /srv/big2 opened for /srv/other: %v, want ErrDestination", err)
	}
}
