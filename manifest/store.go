package manifest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/artifact-sync/artifact-sync/manifest/durable"
)

// Store persists the manifest's files: a flat set of named files, each
// written whole and atomically.
//
// Every implementation guarantees:
//
//   - WriteFile is atomic and durable: once it returns nil the file holds
//     data and survives a crash; if it fails or the process dies, the file
//     holds its previous content (or does not exist), never a mix.
//   - ReadFile of a missing file returns an error satisfying
//     errors.Is(err, fs.ErrNotExist).
//   - Remove of a missing file is not an error.
//   - List returns the names of all files, in any order; it may include
//     files the manifest does not own, which it ignores.
//
// Names are plain file names made of letters, digits, '.', '_' and '-'.
// The manifesttest package checks an implementation against this contract.
type Store interface {
	ReadFile(ctx context.Context, name string) ([]byte, error)
	WriteFile(ctx context.Context, name string, data []byte) error
	Remove(ctx context.Context, name string) error
	List(ctx context.Context) ([]string, error)
	// String names the location for messages (a path or an s3:// URL).
	String() string
}

// OpenFileStore is a Store that can also read a file as a stream, so that
// a large snapshot is decoded as it arrives instead of being read whole
// first. OpenFile of a missing file returns an error satisfying
// errors.Is(err, fs.ErrNotExist).
type OpenFileStore interface {
	Store
	OpenFile(ctx context.Context, name string) (io.ReadCloser, error)
}

// WriteFromStore is a Store that can also write a file from a stream, with
// WriteFile's guarantees: once WriteFileFrom returns nil the file holds
// everything r yielded up to io.EOF, durably; if r fails, or anything else
// does, the file keeps its previous content (or does not exist). So a large
// snapshot is written as it is encoded instead of being encoded whole first.
//
// A wrapper that changes what WriteFile does must do the same in
// WriteFileFrom, or not have it: embedding a DirStore or a MemStore brings
// theirs along.
type WriteFromStore interface {
	Store
	WriteFileFrom(ctx context.Context, name string, r io.Reader) error
}

// OpenFile opens the file name of st as a stream: with st's OpenFile if it
// has one, else from a ReadFile.
func OpenFile(ctx context.Context, st Store, name string) (io.ReadCloser, error) {
	if o, ok := st.(OpenFileStore); ok {
		return o.OpenFile(ctx, name)
	}
	data, err := st.ReadFile(ctx, name)
	if err != nil {
		return nil, err
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}

// WriteFileFrom writes the file name of st from r: with st's WriteFileFrom
// if it has one, else with a WriteFile of everything r yields.
func WriteFileFrom(ctx context.Context, st Store, name string, r io.Reader) error {
	if w, ok := st.(WriteFromStore); ok {
		return w.WriteFileFrom(ctx, name, r)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	return st.WriteFile(ctx, name, data)
}

// DirStore is a Store in a directory of the local file system. The
// directory is created on the first write. Writes go to a temporary file in
// the same directory that is synced, renamed over the target, and then the
// directory is synced, so a crash leaves either the old or the new file.
type DirStore struct {
	Dir string
}

// tempPrefix marks DirStore's temporary files (see durable.WriteFile);
// List leaves them out.
const tempPrefix = ".tmp-"

// String implements Store.
func (d DirStore) String() string { return d.Dir }

func (d DirStore) path(name string) (string, error) {
	if !validName(name) {
		return "", &fs.PathError{Op: "manifest", Path: name, Err: fs.ErrInvalid}
	}
	return filepath.Join(d.Dir, name), nil
}

// ReadFile implements Store.
func (d DirStore) ReadFile(ctx context.Context, name string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := d.path(name)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(p)
}

// WriteFile implements Store.
func (d DirStore) WriteFile(ctx context.Context, name string, data []byte) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := d.path(name)
	if err != nil {
		return err
	}
	return durable.WriteFile(p, data, 0o644)
}

// WriteFileFrom implements WriteFromStore.
func (d DirStore) WriteFileFrom(ctx context.Context, name string, r io.Reader) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := d.path(name)
	if err != nil {
		return err
	}
	return durable.WriteFileFrom(p, r, 0o644)
}

// OpenFile implements OpenFileStore.
func (d DirStore) OpenFile(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := d.path(name)
	if err != nil {
		return nil, err
	}
	return os.Open(p)
}

// Remove implements Store.
func (d DirStore) Remove(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := d.path(name)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// List implements Store. A directory that does not exist yet is empty.
func (d DirStore) List(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	des, err := os.ReadDir(d.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, de := range des {
		if de.Type().IsRegular() && !strings.HasPrefix(de.Name(), tempPrefix) {
			names = append(names, de.Name())
		}
	}
	return names, nil
}

// MemStore is a Store in memory, for tests and dry runs. The zero value is
// an empty store ready to use; it is safe for concurrent use.
type MemStore struct {
	mu    sync.Mutex
	files map[string][]byte
}

// String implements Store.
func (m *MemStore) String() string { return "memory" }

// ReadFile implements Store.
func (m *MemStore) ReadFile(ctx context.Context, name string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.files[name]
	if !ok {
		return nil, &fs.PathError{Op: "read", Path: name, Err: fs.ErrNotExist}
	}
	return slices.Clone(b), nil
}

// WriteFile implements Store.
func (m *MemStore) WriteFile(ctx context.Context, name string, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !validName(name) {
		return &fs.PathError{Op: "write", Path: name, Err: fs.ErrInvalid}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.files == nil {
		m.files = make(map[string][]byte)
	}
	m.files[name] = append([]byte{}, data...)
	return nil
}

// WriteFileFrom implements WriteFromStore.
func (m *MemStore) WriteFileFrom(ctx context.Context, name string, r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	return m.WriteFile(ctx, name, data)
}

// OpenFile implements OpenFileStore.
func (m *MemStore) OpenFile(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.files[name]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return io.NopCloser(bytes.NewReader(b)), nil // WriteFile replaces b, never changes it
}

// Remove implements Store.
func (m *MemStore) Remove(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.files, name)
	return nil
}

// List implements Store.
func (m *MemStore) List(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Sorted(maps.Keys(m.files)), nil
}

// validName reports whether name is a plain file name a Store accepts.
func validName(name string) bool {
	if name == "" || name == "." || name == ".." || len(name) > 255 {
		return false
	}
	for _, c := range []byte(name) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}
