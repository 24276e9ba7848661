package sync

import (
	"context"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"slices"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/artifact-sync/artifact-sync/circleci"
)

// Progress is told what a run does; Pull calls it from many goroutines.
type Progress interface {
	// Found is told of each thing resolved while the plan is made, before
	// Start.
	Found(what Found)
	// Start says the plan is made: files transfers follow. While listing
	// goes on and transfers already run, it is called again as the number
	// grows.
	Start(files int)
	// Size says the latest attempt at the artifact at key will bring n
	// bytes (its Content-Length; 0 when it got no response), or that its
	// size is unknown (n < 0).
	Size(key string, n int64)
	AddBytes(n int64)
	FileDone()
	// Finish ends the display; it may be called more than once.
	Finish()
}

// Found is what Progress.Found is told of.
type Found int

// What a plan resolves, in the order it usually does.
const (
	FoundPipeline Found = iota
	FoundWorkflow
	FoundJob
	FoundListing // a job whose artifacts are being listed
	FoundListed  // a job whose artifacts have been listed
	FoundArtifact
	foundKinds
)

type nopProgress struct{}

func (nopProgress) Found(Found)        {}
func (nopProgress) Start(int)          {}
func (nopProgress) Size(string, int64) {}
func (nopProgress) AddBytes(int64)     {}
func (nopProgress) FileDone()          {}
func (nopProgress) Finish()            {}

// rateWindow is how far back the rate shown looks: recent enough to follow
// a change of speed, long enough not to flicker.
const rateWindow = 5 * time.Second

// NewBar draws progress on a terminal screen: while the plan is made, a
// spinner with what has been resolved; then the share of bytes done (once
// every transfer's size is known: until then it says how many are not),
// the bytes, the recent rate, an ETA and the files done. It fits the
// terminal's width (what matters most stays at 50 columns), redraws in
// place ten times a second and clears itself at the end.
func NewBar(s *Screen) Progress {
	b := &barProgress{screen: s, stop: make(chan struct{}), start: time.Now()}
	b.wg.Add(1)
	go b.loop()
	return b
}

type barProgress struct {
	screen *Screen
	start  time.Time

	found   [foundKinds]atomic.Int64
	pipes   atomic.Int64 // pipelines the selection asks for (the newest K), 0 if not known
	started atomic.Bool
	files   atomic.Int64
	done    atomic.Int64
	bytes   atomic.Int64

	mu       stdsync.Mutex
	sizes    map[string]int64 // the latest attempt's size per artifact; < 0: unknown
	unsized  int64            // entries of sizes that are unknown
	expected int64            // the sum of the known sizes

	samples []sample // for the rate; touched by loop only
	frame   int

	stopOnce stdsync.Once
	stop     chan struct{}
	wg       stdsync.WaitGroup
}

type sample struct {
	t     time.Time
	bytes int64
}

func (b *barProgress) Found(k Found)    { b.found[k].Add(1) }
func (b *barProgress) Start(files int)  { b.files.Store(int64(files)); b.started.Store(true) }
func (b *barProgress) AddBytes(n int64) { b.bytes.Add(n) }
func (b *barProgress) FileDone()        { b.done.Add(1) }

func (b *barProgress) Size(key string, n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sizes == nil {
		b.sizes = map[string]int64{}
	}
	if prev, ok := b.sizes[key]; ok { // a retry: its size replaces the last
		if prev < 0 {
			b.unsized--
		} else {
			b.expected -= prev
		}
	}
	b.sizes[key] = n
	if n < 0 {
		b.unsized++
	} else {
		b.expected += n
	}
}

// known returns how many artifacts' sizes are not known and the sum of those
// that are.
func (b *barProgress) known(files int64) (unknown, total int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return max(files-int64(len(b.sizes)), 0) + b.unsized, b.expected
}

func (b *barProgress) Finish() {
	b.stopOnce.Do(func() {
		close(b.stop)
		b.wg.Wait()
		b.screen.clearStatus()
	})
}

func (b *barProgress) loop() {
	defer b.wg.Done()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case now := <-t.C:
			b.screen.setStatus(b.line(now, b.screen.width()-1))
		}
	}
}

// rate is the bytes per second over the last rateWindow.
func (b *barProgress) rate(now time.Time, bytes int64) float64 {
	b.samples = append(b.samples, sample{now, bytes})
	i := 0
	for i < len(b.samples)-1 && now.Sub(b.samples[i].t) > rateWindow {
		i++
	}
	b.samples = b.samples[i:]
	first := b.samples[0]
	if d := now.Sub(first.t).Seconds(); d > 0.2 {
		return float64(bytes-first.bytes) / d
	}
	return 0
}

// line is the status line at now, at most width columns.
func (b *barProgress) line(now time.Time, width int) string {
	if !b.started.Load() {
		return b.spinner(width)
	}
	bytes := b.bytes.Load()
	rate := b.rate(now, bytes)
	files, done := b.files.Load(), b.done.Load()
	unknown, total := b.known(files)
	if unknown == 0 {
		bytes = min(bytes, total) // a retried attempt's bytes come twice
	}

	// Parts in the order they are shown, each with a priority: when the
	// line is too wide the least important go first.
	type part struct {
		text string
		prio int
	}
	var parts []part
	var frac float64 = -1
	if unknown == 0 && total > 0 {
		frac = min(float64(bytes)/float64(total), 1)
		parts = append(parts, part{fmt.Sprintf("%3.0f%%", 100*frac), 0})
	}
	barAt := len(parts)
	if unknown == 0 {
		parts = append(parts, part{bytesOf(bytes, total), 2})
	} else {
		parts = append(parts, part{HumanBytes(bytes), 2})
	}
	parts = append(parts, part{fmt.Sprintf("%d/%d files", done, files), 1})
	parts = append(parts, part{HumanBytes(int64(rate)) + "/s", 4})
	switch {
	case unknown > 0:
		parts = append(parts, part{fmt.Sprintf("%d of %d sizes not known yet", unknown, files), 5})
	case rate > 0:
		parts = append(parts, part{"ETA " + shortDuration(time.Duration(float64(total-bytes)/rate*float64(time.Second))), 3})
	}
	fits := func(ps []part, extra int) bool {
		n := extra
		for _, p := range ps {
			n += len(p.text) + 1
		}
		return n-1 <= width
	}
	for prio := 5; prio > 0 && !fits(parts, 0); prio-- {
		parts = slices.DeleteFunc(parts, func(p part) bool { return p.prio == prio })
		if barAt > len(parts) {
			barAt = len(parts)
		}
	}
	texts := make([]string, len(parts))
	for i, p := range parts {
		texts[i] = p.text
	}
	// The bar takes what is left, if that is enough to be read.
	used := len(strings.Join(texts, " ")) + 1
	if w := min(width-used, 40); frac >= 0 && w >= 12 {
		texts = append(texts[:barAt:barAt], append([]string{drawBar(frac, w)}, texts[barAt:]...)...)
	}
	line := strings.Join(texts, " ")
	if len(line) > width {
		line = line[:max(width, 0)]
	}
	return line
}

// spinner is the status line while the plan is made.
func (b *barProgress) spinner(width int) string {
	b.frame++
	var parts []string
	for k, name := range []string{"pipeline", "workflow", "job"} {
		if want := b.pipes.Load(); k == int(FoundPipeline) && want > 1 {
			parts = append(parts, fmt.Sprintf("pipelines %d/%d", b.found[k].Load(), want))
		} else if n := b.found[k].Load(); n == 1 {
			parts = append(parts, "1 "+name)
		} else if n > 1 {
			parts = append(parts, fmt.Sprintf("%d %ss", n, name))
		}
	}
	if n := b.found[FoundListing].Load(); n > 0 {
		parts = append(parts, fmt.Sprintf("artifacts of %d/%d jobs listed (%d)", b.found[FoundListed].Load(), n, b.found[FoundArtifact].Load()))
	}
	line := string(`|/-\`[b.frame%4]) + " resolving"
	if len(parts) > 0 {
		line += ": " + strings.Join(parts, ", ")
	}
	line += " ..."
	if len(line) > width {
		line = line[:max(width, 0)]
	}
	return line
}

// drawBar draws the bar of the status line, width columns: "[====>   ]",
// rendered by progressbar and fitted into the line the rest of it makes.
func drawBar(frac float64, width int) string {
	const steps = 1000
	bar := progressbar.NewOptions(steps,
		progressbar.OptionSetWriter(io.Discard),
		progressbar.OptionSetWidth(width-2),
		progressbar.OptionSetTheme(progressbar.Theme{Saucer: "=", SaucerHead: ">", SaucerPadding: " ", BarStart: "[", BarEnd: "]"}),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionSetElapsedTime(false),
		progressbar.OptionSetRenderBlankState(true),
	)
	_ = bar.Set(int(frac * steps))
	s := bar.String()
	i, j := strings.IndexByte(s, '['), strings.LastIndexByte(s, ']')
	if i < 0 || j < i {
		return ""
	}
	return s[i : j+1]
}

// bytesOf shows done of total, sharing the unit when it is the same:
// "312.4/740.0 MiB".
func bytesOf(done, total int64) string {
	d, t := HumanBytes(done), HumanBytes(total)
	if du, tu := d[strings.LastIndexByte(d, ' ')+1:], t[strings.LastIndexByte(t, ' ')+1:]; du == tu {
		return d[:len(d)-len(du)-1] + "/" + t
	}
	return d + "/" + t
}

// shortDuration shows d as people read an ETA: 7s, 2m05s, 1h02m.
func shortDuration(d time.Duration) string {
	s := int64(d.Round(time.Second) / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	}
	return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
}

// NewLogProgress logs a line every interval instead of drawing: for stderr
// that is not a terminal (CI logs, cron mail), with no escape codes.
func NewLogProgress(log *slog.Logger, every time.Duration) Progress {
	return &logProgress{log: log, every: every}
}

type logProgress struct {
	log      *slog.Logger
	every    time.Duration
	files    atomic.Int64
	bytes    atomic.Int64
	done     atomic.Int64
	start    time.Time
	stop     chan struct{}
	stopOnce stdsync.Once
	wg       stdsync.WaitGroup
}

func (p *logProgress) Found(Found)        {}
func (p *logProgress) Size(string, int64) {}

func (p *logProgress) Start(files int) {
	p.files.Store(int64(files))
	if p.stop != nil {
		return // more files found while the first ones transfer
	}
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
	p.log.Info("progress", "files_done", p.done.Load(), "files", p.files.Load(), "bytes", b,
		"rate", HumanBytes(int64(float64(b)/max(time.Since(p.start).Seconds(), 0.001)))+"/s")
}

func (p *logProgress) AddBytes(n int64) { p.bytes.Add(n) }
func (p *logProgress) FileDone()        { p.done.Add(1) }

func (p *logProgress) Finish() {
	p.stopOnce.Do(func() {
		if p.stop != nil {
			close(p.stop)
			p.wg.Wait()
		}
	})
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

// observeAPI tells p what the plan of sel resolves through api.
func observeAPI(api API, p Progress, sel *Selection) API {
	if _, ok := p.(nopProgress); ok {
		return api
	}
	if b, ok := p.(*barProgress); ok && len(sel.Jobs) == 0 && sel.PipelineID == "" && sel.PipelineNumber == 0 && len(sel.Workflows) == 0 {
		b.pipes.Store(int64(max(sel.Pipelines, 1))) // the newest K of a branch
	}
	return &observedAPI{API: api, p: p}
}

type observedAPI struct {
	API
	p Progress
}

func observeSeq[T any](seq iter.Seq2[T, error], each func()) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		for v, err := range seq {
			if err == nil {
				each()
			}
			if !yield(v, err) {
				return
			}
		}
	}
}

func (o *observedAPI) found(k Found) func() { return func() { o.p.Found(k) } }

func (o *observedAPI) Pipelines(ctx context.Context, slug circleci.Slug, branch string) iter.Seq2[circleci.Pipeline, error] {
	return observeSeq(o.API.Pipelines(ctx, slug, branch), o.found(FoundPipeline))
}

func (o *observedAPI) PipelineByNumber(ctx context.Context, slug circleci.Slug, number int64) (*circleci.Pipeline, error) {
	p, err := o.API.PipelineByNumber(ctx, slug, number)
	if err == nil {
		o.p.Found(FoundPipeline)
	}
	return p, err
}

func (o *observedAPI) Pipeline(ctx context.Context, id string) (*circleci.Pipeline, error) {
	p, err := o.API.Pipeline(ctx, id)
	if err == nil {
		o.p.Found(FoundPipeline)
	}
	return p, err
}

func (o *observedAPI) Workflows(ctx context.Context, pipelineID string) iter.Seq2[circleci.Workflow, error] {
	return observeSeq(o.API.Workflows(ctx, pipelineID), o.found(FoundWorkflow))
}

func (o *observedAPI) Workflow(ctx context.Context, id string) (*circleci.Workflow, error) {
	w, err := o.API.Workflow(ctx, id)
	if err == nil {
		o.p.Found(FoundWorkflow)
	}
	return w, err
}

func (o *observedAPI) WorkflowJobs(ctx context.Context, workflowID string) iter.Seq2[circleci.Job, error] {
	return observeSeq(o.API.WorkflowJobs(ctx, workflowID), o.found(FoundJob))
}

func (o *observedAPI) JobDetails(ctx context.Context, slug circleci.Slug, number int64) (*circleci.JobDetails, error) {
	d, err := o.API.JobDetails(ctx, slug, number)
	if err == nil {
		o.p.Found(FoundJob)
	}
	return d, err
}

func (o *observedAPI) Artifacts(ctx context.Context, slug circleci.Slug, jobNumber int64) iter.Seq2[circleci.Artifact, error] {
	seq := observeSeq(o.API.Artifacts(ctx, slug, jobNumber), o.found(FoundArtifact))
	return func(yield func(circleci.Artifact, error) bool) {
		o.p.Found(FoundListing)
		defer o.p.Found(FoundListed)
		seq(yield)
	}
}
