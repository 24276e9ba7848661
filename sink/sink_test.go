package sink_test

import (
	"crypto/rand"
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
