package sync_test

import (
	"strconv"
	"testing"

	"github.com/artifact-sync/artifact-sync/manifest"
	"github.com/artifact-sync/artifact-sync/manifest/manifesttest"
	"github.com/artifact-sync/artifact-sync/sink"
	"github.com/artifact-sync/artifact-sync/sink/sinktest"
	ccsync "github.com/artifact-sync/artifact-sync/sync"
)

// The manifest keeps its files in the destination through SinkStore; it must
// meet the manifest's store contract on every sink.
func TestSinkStoreMeetsTheManifestStoreContract(t *testing.T) {
	t.Run("local", func(t *testing.T) {
		manifesttest.TestStore(t, func(t *testing.T) manifest.Store {
			s, _ := localSink(t)
			return &ccsync.SinkStore{Sink: s, Prefix: ccsync.ManifestPrefix}
		})
	})
	t.Run("memory", func(t *testing.T) {
		manifesttest.TestStore(t, func(t *testing.T) manifest.Store {
			return &ccsync.SinkStore{Sink: sink.NewMemory(), Prefix: ccsync.ManifestPrefix}
		})
	})
	t.Run("s3", func(t *testing.T) {
		env := sinktest.NewS3Bucket(t)
		n := 0
		manifesttest.TestStore(t, func(t *testing.T) manifest.Store {
			n++
			return &ccsync.SinkStore{Sink: env.NewS3(t, "m"+strconv.Itoa(n)), Prefix: ccsync.ManifestPrefix}
		})
	})
}
