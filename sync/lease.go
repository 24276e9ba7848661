package sync

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"

	"github.com/artifact-sync/artifact-sync/manifest"
	"github.com/artifact-sync/artifact-sync/sink"
)

// uploadTidier is a sink that cleans up, once a run holds its lock, the
// unfinished uploads earlier runs abandoned (S3's multipart uploads).
type uploadTidier interface {
	TidyUploads(ctx context.Context) error
}

// confirmer is a lease that can prove it is still held just before a
// write (an S3 lease renews itself if its last renewal is not fresh).
type confirmer interface {
	Confirm(ctx context.Context) error
}

// fencer is a lease through which the holder writes objects of the
// destination conditionally on their being the version it last read or
// wrote (an S3 lease: If-Match), so that a write held up until another run
// took the lease over fails instead of replacing that run's version.
type fencer interface {
	FencedOpen(ctx context.Context, key string) (io.ReadCloser, error)
	FencedPut(ctx context.Context, key string, r io.Reader, size int64) error
	FencedDelete(ctx context.Context, key string) error
}

// leaseManifest makes every write of the manifest (store, or the default
// one in dest) conditional on still holding lease, where the lease can
// tell: a run whose lock was taken over must not overwrite the manifest of
// the run that took it. A manifest kept in dest itself is fenced by the
// server (fencer); one kept elsewhere (--manifest) by Confirm alone.
func leaseManifest(dest sink.Sink, store manifest.Store, lease sink.Lease) manifest.Store {
	c, ok := lease.(confirmer)
	if !ok {
		return store
	}
	if store == nil {
		store = &SinkStore{Sink: dest, Prefix: ManifestPrefix}
	}
	if f, ok := lease.(fencer); ok {
		if ss, ok := store.(*SinkStore); ok && ss.Sink == dest {
			return &fencedStore{SinkStore: ss, fence: f}
		}
	}
	return &leasedStore{Store: store, lease: c}
}

// fencedStore is a SinkStore whose reads note each file's version and
// whose writes replace only the version noted (see fencer).
type fencedStore struct {
	*SinkStore
	fence fencer
}

func (s *fencedStore) OpenFile(ctx context.Context, name string) (io.ReadCloser, error) {
	return s.fence.FencedOpen(ctx, s.Prefix+name)
}

func (s *fencedStore) ReadFile(ctx context.Context, name string) ([]byte, error) {
	rc, err := s.OpenFile(ctx, name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func (s *fencedStore) WriteFile(ctx context.Context, name string, data []byte) error {
	return s.fence.FencedPut(ctx, s.Prefix+name, bytes.NewReader(data), int64(len(data)))
}

func (s *fencedStore) WriteFileFrom(ctx context.Context, name string, r io.Reader) error {
	return s.fence.FencedPut(ctx, s.Prefix+name, r, -1)
}

func (s *fencedStore) Remove(ctx context.Context, name string) error {
	err := s.fence.FencedDelete(ctx, s.Prefix+name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

type leasedStore struct {
	manifest.Store
	lease confirmer
}

func (s *leasedStore) WriteFile(ctx context.Context, name string, data []byte) error {
	if err := s.lease.Confirm(ctx); err != nil {
		return err
	}
	return s.Store.WriteFile(ctx, name, data)
}

func (s *leasedStore) Remove(ctx context.Context, name string) error {
	if err := s.lease.Confirm(ctx); err != nil {
		return err
	}
	return s.Store.Remove(ctx, name)
}

func (s *leasedStore) WriteFileFrom(ctx context.Context, name string, r io.Reader) error {
	if err := s.lease.Confirm(ctx); err != nil {
		return err
	}
	return manifest.WriteFileFrom(ctx, s.Store, name, r)
}

func (s *leasedStore) OpenFile(ctx context.Context, name string) (io.ReadCloser, error) {
	return manifest.OpenFile(ctx, s.Store, name)
}
