package sync

import (
	"fmt"
	"regexp"
	"strconv"
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
	// One size not known: guessed as the mean of the two known (100, 0).
	if line := b.line(time.Now(), 200); !strings.Contains(line, "140/~150 B") {
		t.Errorf("with one artifact not started, want 140 of about 150 bytes: %q", line)
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

// TestBarEstimatesFromTheFirstSeconds: sizes become known as responses
// arrive, one file after another. From the first size on, the line shows a
// share and an ETA against a total guessed from the sizes known, marked
// "~"; the ETA follows the rate of the last seconds, not the average since
// the start; once every size is known the total is exact.
func TestBarEstimatesFromTheFirstSeconds(t *testing.T) {
	const files, size = 10, 1 << 20
	b := &barProgress{screen: NewScreen(&strings.Builder{}, false), start: time.Now()}
	b.Start(files)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) // a fake clock
	var done int64
	sized, finished := 0, 0
	// advance moves the clock d at rate bytes per second, drawing the line
	// every 100 ms as the bar does; each file's size becomes known when its
	// download starts, and it is done when its last byte is in.
	advance := func(d time.Duration, rate int64) string {
		var line string
		for step := time.Duration(0); step < d; step += 100 * time.Millisecond {
			now = now.Add(100 * time.Millisecond)
			n := min(rate/10, files*size-done)
			done += n
			b.AddBytes(n)
			for sized < files && int64(sized)*size <= done {
				b.Size(fmt.Sprintf("f%d", sized), size)
				sized++
			}
			for finished < files && int64(finished+1)*size <= done {
				b.FileDone()
				finished++
			}
			line = b.line(now, 200)
		}
		return line
	}

	line := advance(time.Second, 100<<10)
	if !strings.Contains(line, "/~10.0 MiB") || !regexp.MustCompile(`^\s*1% `).MatchString(line) || !strings.Contains(line, "ETA 1m41s") {
		t.Errorf("after 1 s, one size of ten known: want 1%%, ~10.0 MiB and an ETA of 101 s at 100 KiB/s: %q", line)
	}
	advance(19*time.Second, 100<<10)
	// The rate rises fourfold: 6000 KiB done after 30 s (200 KiB/s on
	// average), 4240 KiB of about 10 MiB left at 400 KiB/s is 11 s.
	line = advance(10*time.Second, 400<<10)
	if !strings.Contains(line, "5.9/~10.0 MiB") || !strings.HasPrefix(line, " 59%") {
		t.Errorf("after 30 s, six sizes of ten known: want 59%% of ~10.0 MiB: %q", line)
	}
	if m := regexp.MustCompile(`ETA (\d+)s`).FindStringSubmatch(line); m == nil || atoi(m[1]) < 10 || atoi(m[1]) > 12 {
		t.Errorf("after the rate rose to 400 KiB/s with 4240 KiB left, want an ETA of about 11 s: %q", line)
	}
	line = advance(12*time.Second, 400<<10)
	if !strings.HasPrefix(line, "100%") || !strings.Contains(line, "10.0/10.0 MiB") || strings.Contains(line, "~") {
		t.Errorf("every size known: want the exact total: %q", line)
	}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
