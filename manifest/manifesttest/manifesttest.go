// Package manifesttest checks implementations of manifest.Store against the
// contract the manifest relies on.
package manifesttest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"slices"
	"testing"
	"testing/iotest"

	"github.com/artifact-sync/artifact-sync/manifest"
)

// TestStore runs the conformance checks on stores returned by newStore,
// which must return a new, empty store each time it is called.
func TestStore(t *testing.T, newStore func(t *testing.T) manifest.Store) {
	t.Run("Missing", func(t *testing.T) {
		st := newStore(t)
		ctx := t.Context()
		if _, err := st.ReadFile(ctx, "manifest.json"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("ReadFile of a missing file: got %v, want an error matching fs.ErrNotExist", err)
		}
		if err := st.Remove(ctx, "manifest.json"); err != nil {
			t.Errorf("Remove of a missing file: %v", err)
		}
		names, err := st.List(ctx)
		if err != nil {
			t.Fatalf("List of an empty store: %v", err)
		}
		if len(names) != 0 {
			t.Errorf("List of an empty store = %q, want none", names)
		}
		if st.String() == "" {
			t.Errorf("String() is empty; messages need a location")
		}
	})

	t.Run("WriteReadListRemove", func(t *testing.T) {
		st := newStore(t)
		ctx := t.Context()
		files := map[string][]byte{
			"manifest.json": []byte("{\n}\n"),
			"journal-20250102T030405Z-ab-000001.jsonl": []byte("a\nb\n"),
			"empty.json": {},
		}
		for name, data := range files {
			if err := st.WriteFile(ctx, name, data); err != nil {
				t.Fatalf("WriteFile(%q): %v", name, err)
			}
		}
		for name, want := range files {
			got, err := st.ReadFile(ctx, name)
			if err != nil {
				t.Fatalf("ReadFile(%q): %v", name, err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("ReadFile(%q) = %q, want %q", name, got, want)
			}
		}
		names, err := st.List(ctx)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		slices.Sort(names)
		want := []string{"empty.json", "journal-20250102T030405Z-ab-000001.jsonl", "manifest.json"}
		if !slices.Equal(names, want) {
			t.Errorf("List = %q, want %q", names, want)
		}

		if err := st.WriteFile(ctx, "manifest.json", []byte("second")); err != nil {
			t.Fatalf("overwriting: %v", err)
		}
		if got, _ := st.ReadFile(ctx, "manifest.json"); string(got) != "second" {
			t.Errorf("after overwrite ReadFile = %q, want %q", got, "second")
		}

		if err := st.Remove(ctx, "empty.json"); err != nil {
			t.Fatalf("Remove: %v", err)
		}
		if _, err := st.ReadFile(ctx, "empty.json"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("ReadFile after Remove: got %v, want fs.ErrNotExist", err)
		}
		names, _ = st.List(ctx)
		if slices.Contains(names, "empty.json") {
			t.Errorf("List after Remove still has the file: %q", names)
		}
	})

	t.Run("WriteCopiesData", func(t *testing.T) {
		st := newStore(t)
		ctx := t.Context()
		data := []byte("original")
		if err := st.WriteFile(ctx, "manifest.json", data); err != nil {
			t.Fatal(err)
		}
		copy(data, "CHANGED!")
		got, err := st.ReadFile(ctx, "manifest.json")
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != "original" {
			t.Errorf("the store kept the caller's buffer: read %q after the caller changed it", got)
		}
	})

	t.Run("Streams", func(t *testing.T) {
		st := newStore(t)
		ctx := t.Context()
		w, canWrite := st.(manifest.WriteFromStore)
		o, canOpen := st.(manifest.OpenFileStore)
		if !canWrite && !canOpen {
			t.Skip("the store takes no streams")
		}
		if canOpen {
			if _, err := o.OpenFile(ctx, "manifest.json"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("OpenFile of a missing file: got %v, want an error matching fs.ErrNotExist", err)
			}
		}
		// Larger than any buffer on the way, in pieces of odd sizes.
		want := bytes.Repeat([]byte("0123456789abcdef\n"), 1<<16)
		if canWrite {
			if err := w.WriteFileFrom(ctx, "manifest.json", iotest.OneByteReader(bytes.NewReader(want[:1000]))); err != nil {
				t.Fatalf("WriteFileFrom: %v", err)
			}
			if err := w.WriteFileFrom(ctx, "manifest.json", iotest.HalfReader(bytes.NewReader(want))); err != nil {
				t.Fatalf("WriteFileFrom: %v", err)
			}
		} else if err := st.WriteFile(ctx, "manifest.json", want); err != nil {
			t.Fatal(err)
		}
		got, err := st.ReadFile(ctx, "manifest.json")
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("ReadFile after WriteFileFrom: %d bytes, %v; want the %d bytes written", len(got), err, len(want))
		}
		if canOpen {
			rc, err := o.OpenFile(ctx, "manifest.json")
			if err != nil {
				t.Fatalf("OpenFile: %v", err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("OpenFile read %d bytes, %v; want the %d bytes written", len(got), err, len(want))
			}
		}
		if !canWrite {
			return
		}
		// A stream that fails changes nothing, whether the file exists or not.
		broken := io.MultiReader(bytes.NewReader(want[:5000]), iotest.ErrReader(errors.New("connection reset")))
		if err := w.WriteFileFrom(ctx, "manifest.json", broken); err == nil {
			t.Errorf("WriteFileFrom of a stream that failed succeeded")
		}
		if got, err := st.ReadFile(ctx, "manifest.json"); err != nil || !bytes.Equal(got, want) {
			t.Errorf("a failed WriteFileFrom changed the file: %d bytes, %v", len(got), err)
		}
		broken = io.MultiReader(bytes.NewReader(want[:5000]), iotest.ErrReader(errors.New("connection reset")))
		if err := w.WriteFileFrom(ctx, "journal-20250102T030405Z-ab-000001.jsonl", broken); err == nil {
			t.Errorf("WriteFileFrom of a stream that failed succeeded")
		}
		if _, err := st.ReadFile(ctx, "journal-20250102T030405Z-ab-000001.jsonl"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("a failed WriteFileFrom left a file (ReadFile: %v)", err)
		}
		names, _ := st.List(ctx)
		if !slices.Equal(names, []string{"manifest.json"}) {
			t.Errorf("List after failed writes = %q, want [manifest.json]", names)
		}
	})

	t.Run("CancelledContext", func(t *testing.T) {
		st := newStore(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := st.WriteFile(ctx, "manifest.json", []byte("x")); err == nil {
			t.Errorf("WriteFile with a cancelled context succeeded")
		}
		if _, err := st.ReadFile(t.Context(), "manifest.json"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("a cancelled WriteFile left a file behind (ReadFile: %v)", err)
		}
	})
}
