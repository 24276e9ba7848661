package sync

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"strings"

	"github.com/artifact-sync/artifact-sync/sink"
)

// StateDir is the folder under the destination that holds everything the
// tool keeps for itself: manifest, lock, partial files.
const StateDir = sink.StateDir

// ManifestPrefix is where the manifest's files live under a destination
// unless --manifest says otherwise.
const ManifestPrefix = StateDir + "/manifest/"

// SinkStore keeps the manifest's files in a sink under a key prefix, so the
// manifest of an S3 destination lives in the bucket beside the artifacts.
type SinkStore struct {
	Sink   sink.Sink
	Prefix string // e.g. ManifestPrefix; "" for the sink's root
}

func (s *SinkStore) ReadFile(ctx context.Context, name string) ([]byte, error) {
	rc, err := s.Sink.Open(ctx, s.Prefix+name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func (s *SinkStore) WriteFile(ctx context.Context, name string, data []byte) error {
	_, err := s.Sink.Put(ctx, s.Prefix+name, bytes.NewReader(data), sink.PutOptions{Size: int64(len(data))})
	return err
}

// WriteFileFrom writes the file from a stream, so a large snapshot of the
// manifest is never held whole (manifest.WriteFromStore).
func (s *SinkStore) WriteFileFrom(ctx context.Context, name string, r io.Reader) error {
	_, err := s.Sink.Put(ctx, s.Prefix+name, r, sink.PutOptions{Size: -1})
	return err
}

// OpenFile reads the file as a stream (manifest.OpenFileStore).
func (s *SinkStore) OpenFile(ctx context.Context, name string) (io.ReadCloser, error) {
	return s.Sink.Open(ctx, s.Prefix+name)
}

func (s *SinkStore) Remove(ctx context.Context, name string) error {
	err := s.Sink.Delete(ctx, s.Prefix+name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

func (s *SinkStore) List(ctx context.Context) ([]string, error) {
	var names []string
	for info, err := range s.Sink.List(ctx, s.Prefix) {
		if err != nil {
			return nil, err
		}
		name := strings.TrimPrefix(info.Key, s.Prefix)
		if name == "" || strings.Contains(name, "/") {
			continue
		}
		names = append(names, name)
	}
	return names, nil
}

func (s *SinkStore) String() string {
	loc := strings.TrimSuffix(s.Sink.String(), "/")
	if s.Prefix == "" {
		return loc
	}
	return loc + "/" + strings.TrimSuffix(s.Prefix, "/")
}
