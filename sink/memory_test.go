package sink_test

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/sink"
	"github.com/artifact-sync/artifact-sync/sink/sinktest"
)

// peakHeap runs f and reports how far the in-use heap rose above where it
// started, sampled every millisecond.
func peakHeap(t *testing.T, f func()) uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var ms runtime.MemStats
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > base && ms.HeapInuse-base > peak.Load() {
				peak.Store(ms.HeapInuse - base)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	})
	f()
	close(done)
	wg.Wait()
	return peak.Load()
}

// zeroes is a 64 MiB stream that takes no memory itself.
type zeroes struct{ n int64 }

func (z *zeroes) Read(p []byte) (int, error) {
	if z.n == 0 {
		return 0, io.EOF
	}
	n := min(int64(len(p)), z.n)
	clear(p[:n])
	z.n -= n
	return int(n), nil
}

const streamSize = 64 << 20

var zeroSum = func() string {
	h := sha256.New()
	h.Write(make([]byte, streamSize))
	return hex.EncodeToString(h.Sum(nil))
}()

// TestMemoryBound streams 64 MiB to each sink and checks that the heap
// stays within the documented bound: for S3 (Concurrency+1) × PartSize,
// for a directory a small copy buffer.
func TestMemoryBound(t *testing.T) {
	const MiB = 1 << 20
	// Collect often, so the rise measures what is held, not how much
	// garbage (request signing, XML replies) piles up between collections.
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	l, _ := sink.NewLocal(t.TempDir())
	peak := peakHeap(t, func() {
		info, err := l.Put(t.Context(), "big", &zeroes{streamSize}, sink.PutOptions{Size: -1})
		if err != nil || info.SHA256 != zeroSum {
			t.Errorf("Put: %+v, %v", info, err)
		}
	})
	t.Logf("local: 64 MiB streamed with a peak heap rise of %.1f MiB", float64(peak)/MiB)
	if peak > 8*MiB {
		t.Errorf("local Put of 64 MiB raised the heap by %d MiB, want < 8", peak/MiB)
	}

	env := sinktest.NewS3Bucket(t)
	cfg := env.Config("")
	cfg.Concurrency = 4
	s, err := sink.NewS3(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	bound := uint64(cfg.Concurrency+1) * uint64(cfg.PartSize)
	const slack = 12 * MiB // GC lag (more on a busy machine), HTTP and SDK buffers
	for _, size := range []int64{streamSize, -1} {
		peak := peakHeap(t, func() {
			info, err := s.Put(t.Context(), "big", &zeroes{streamSize}, sink.PutOptions{Size: size})
			if err != nil || info.SHA256 != zeroSum {
				t.Errorf("Put: %+v, %v", info, err)
			}
		})
		t.Logf("s3 (part %d MiB × %d, size %d): 64 MiB streamed with a peak heap rise of %.1f MiB (documented bound %d MiB)",
			cfg.PartSize/MiB, cfg.Concurrency, size, float64(peak)/MiB, bound/MiB)
		if peak > bound+slack {
			t.Errorf("S3 Put of 64 MiB raised the heap by %d MiB, want <= %d + %d slack", peak/MiB, bound/MiB, slack/MiB)
		}
		info, err := s.Stat(t.Context(), "big")
		if err != nil || info.Size != streamSize || info.SHA256 != zeroSum {
			t.Errorf("Stat after multipart Put = %+v, %v", info, err)
		}
	}
}
