package sync

import (
	"fmt"
	"io"
	"log/slog"
	stdsync "sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
)

// Progress is told what the transfers do; Pull calls it from many goroutines.
type Progress interface {
	Start(files int)
	AddBytes(n int64)
	FileDone()
	Finish()
}

type nopProgress struct{}

func (nopProgress) Start(int)      {}
func (nopProgress) AddBytes(int64) {}
func (nopProgress) FileDone()      {}
func (nopProgress) Finish()        {}

// NewBar draws a progress bar on w, a terminal: files done out of the total
// with an ETA, and the bytes received with their rate. It redraws in place
// and clears itself at the end, leaving the screen to the summary.
func NewBar(w io.Writer) Progress {
	return &barProgress{w: w}
}

type barProgress struct {
	w        io.Writer
	mu       stdsync.Mutex
	bar      *progressbar.ProgressBar
	bytes    int64
	start    time.Time
	lastDesc time.Time
}

func (p *barProgress) Start(files int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.start = time.Now()
	p.bar = progressbar.NewOptions(files,
		progressbar.OptionSetWriter(p.w),
		progressbar.OptionSetDescription(p.desc()),
		progressbar.OptionSetItsString("files"),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(25),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionUseANSICodes(true),
		progressbar.OptionSetTheme(progressbar.Theme{Saucer: "=", SaucerHead: ">", SaucerPadding: " ", BarStart: "[", BarEnd: "]"}),
	)
}

func (p *barProgress) desc() string {
	rate := float64(p.bytes) / max(time.Since(p.start).Seconds(), 0.001)
	return fmt.Sprintf("%9s %10s/s", HumanBytes(p.bytes), HumanBytes(int64(rate)))
}

func (p *barProgress) AddBytes(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bytes += n
	if p.bar != nil && time.Since(p.lastDesc) > 200*time.Millisecond {
		p.lastDesc = time.Now()
		p.bar.Describe(p.desc())
	}
}

func (p *barProgress) FileDone() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		p.bar.Describe(p.desc())
		_ = p.bar.Add(1)
	}
}

func (p *barProgress) Finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}

// NewLogProgress logs a line every interval instead of drawing: for stderr
// that is not a terminal (CI logs, cron mail), with no escape codes.
func NewLogProgress(log *slog.Logger, every time.Duration) Progress {
	return &logProgress{log: log, every: every}
}

type logProgress struct {
	log   *slog.Logger
	every time.Duration
	files int
	bytes atomic.Int64
	done  atomic.Int64
	start time.Time
	stop  chan struct{}
	wg    stdsync.WaitGroup
}

func (p *logProgress) Start(files int) {
	p.files = files
	p.start = time.Now()
	p.stop = make(chan struct{})
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(p.every)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.line()
			}
		}
	}()
}

func (p *logProgress) line() {
	b := p.bytes.Load()
	p.log.Info("progress", "files_done", p.done.Load(), "files", p.files, "bytes", b,
		"rate", HumanBytes(int64(float64(b)/max(time.Since(p.start).Seconds(), 0.001)))+"/s")
}

func (p *logProgress) AddBytes(n int64) { p.bytes.Add(n) }
func (p *logProgress) FileDone()        { p.done.Add(1) }

func (p *logProgress) Finish() {
	if p.stop != nil {
		close(p.stop)
		p.wg.Wait()
	}
}

// HumanBytes formats n with binary units: 1.5 MiB.
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
