package sync

import (
	"context"
	"io"

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

// leaseManifest makes every write of the manifest (store, or the default
// one in dest) conditional on still holding lease, where the lease can
// tell: a run whose lock was taken over must not overwrite the manifest of
// the run that took it.
func leaseManifest(dest sink.Sink, store manifest.Store, lease sink.Lease) manifest.Store {
	c, ok := lease.(confirmer)
	if !ok {
		return store
	}
	if store == nil {
		store = &SinkStore{Sink: dest, Prefix: ManifestPrefix}
	}
	return &leasedStore{Store: store, lease: c}
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
