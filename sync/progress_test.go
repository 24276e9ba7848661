package sync

import (
	"strings"
	"testing"
	"time"
)

// TestBarCountsBytesOfEachArtifactOnce: a retried artifact's size replaces
// its last attempt's, and one that got no response at all does not leave
// the bar waiting for a size forever.
func TestBarCountsBytesOfEachArtifactOnce(t *testing.T) {
	b := &barProgress{screen: NewScreen(&strings.Builder{}, false), start: time.Now()}
	b.Start(3)
	b.Size("a", 100)
	b.AddBytes(40) // cut short
	b.Size("a", 100)
	b.AddBytes(100)
	b.FileDone()
	b.Size("gone", 0) // 404: no body
	b.FileDone()
	if line := b.line(time.Now(), 200); !strings.Contains(line, "1 of 3 sizes not known yet") || strings.Contains(line, "%") {
		t.Errorf("with one artifact not started: %q", line)
	}
	b.Size("c", 100)
	b.AddBytes(60)
	line := b.line(time.Now().Add(time.Second), 200)
	if !strings.HasPrefix(line, "100%") || !strings.Contains(line, "/200 B") {
		t.Errorf("every size known, 200 bytes in all (the retry's counted once): %q", line)
	}
	if !strings.Contains(line, "2/3 files") {
		t.Errorf("files: %q", line)
	}
}

// The bar is exactly as wide as the line leaves it, and filled in
// proportion to what is done.
func TestDrawBarWidthAndFill(t *testing.T) {
	for _, width := range []int{12, 20, 40} {
		for _, frac := range []float64{0, 0.25, 0.5, 1} {
			bar := drawBar(frac, width)
			if len(bar) != width || bar[0] != '[' || bar[width-1] != ']' {
				t.Fatalf("drawBar(%v, %d) = %q: want [...] of exactly %d columns", frac, width, bar, width)
			}
			filled := strings.Count(bar, "=") + strings.Count(bar, ">")
			if want := int(frac * float64(width-2)); filled < want-1 || filled > want+1 {
				t.Errorf("drawBar(%v, %d) = %q: %d cells filled, want about %d", frac, width, bar, filled, want)
			}
		}
	}
}

// TestSpinnerCountsTheNewestPipelines: while the newest K pipelines are
// resolved, the spinner says how many of K are in.
func TestSpinnerCountsTheNewestPipelines(t *testing.T) {
	b := &barProgress{screen: NewScreen(&strings.Builder{}, false), start: time.Now()}
	observeAPI(nil, b, &Selection{Branch: "main", Pipelines: 5})
	for range 3 {
		b.Found(FoundPipeline)
	}
	for range 12 {
		b.Found(FoundJob)
	}
	if line := b.spinner(80); !strings.Contains(line, "resolving: pipelines 3/5, 12 jobs") {
		t.Errorf("spinner: %q", line)
	}
}
