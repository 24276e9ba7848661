package sync

import (
	"context"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"math"
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

// tally counts what both displays show: the files, the bytes downloaded,
// the sizes known so far, and samples of the bytes over time for the rate.
// Its zero value is ready; the methods may be called from many goroutines.
type tally struct {
	files atomic.Int64
	done  atomic.Int64
	bytes atomic.Int64

	mu       stdsync.Mutex
	sizes    map[string]int64 // the latest attempt's size per artifact; < 0: unknown
	unsized  int64            // entries of sizes that are unknown
	expected int64            // the sum of the known sizes
	samples  []sample         // bytes at past moments, for the rate
}

type sample struct {
	t     time.Time
	bytes int64
}

func (t *tally) AddBytes(n int64) { t.bytes.Add(n) }
func (t *tally) FileDone()        { t.done.Add(1) }

func (t *tally) Size(key string, n int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.sizes == nil {
		t.sizes = map[string]int64{}
	}
	if prev, ok := t.sizes[key]; ok { // a retry: its size replaces the last
		if prev < 0 {
			t.unsized--
		} else {
			t.expected -= prev
		}
	}
	t.sizes[key] = n
	if n < 0 {
		t.unsized++
	} else {
		t.expected += n
	}
}

// estimate is how far a run is at one moment.
type estimate struct {
	files, filesDone int64
	done             int64         // bytes downloaded
	total            int64         // bytes in all, 0 while no size is known
	guessed          bool          // total counts sizes not known yet at the mean of those known
	frac             float64       // done/total; -1 without a total
	rate             float64       // bytes per second over the last rateWindow
	eta              time.Duration // -1 when not known
}

// estimate is how far the run is at now. Sizes become known as the
// responses arrive, so until every one is, the total counts each unknown
// size as the mean of the known ones: a run of many files has a share and
// an ETA within its first seconds, marked as guessed. The ETA divides what
// is left by the rate over the last rateWindow, not since the start, so it
// follows a change of speed (a fast start on small files, a slow large one
// at the end). now is passed in, and each call samples the bytes for the
// rate.
func (t *tally) estimate(now time.Time) estimate {
	e := estimate{files: t.files.Load(), filesDone: t.done.Load(), done: t.bytes.Load(), frac: -1, eta: -1}
	t.mu.Lock()
	defer t.mu.Unlock()
	e.rate = t.rate(now, e.done)
	unknown := max(e.files-int64(len(t.sizes)), 0) + t.unsized
	if known := int64(len(t.sizes)) - t.unsized; known > 0 {
		e.total = t.expected
		if unknown > 0 {
			e.guessed = true
			e.total += int64(float64(t.expected) / float64(known) * float64(unknown))
		}
	}
	switch {
	case e.total == 0:
		return e
	case e.guessed:
		e.total = max(e.total, e.done) // a download of no declared length ran past the guess
	default:
		e.done = min(e.done, e.total) // a retried attempt's bytes come twice
	}
	e.frac = float64(e.done) / float64(e.total)
	if e.rate > 0 {
		e.eta = time.Duration(float64(e.total-e.done) / e.rate * float64(time.Second))
	}
	return e
}

// rate adds the sample (now, bytes) and returns the bytes per second since
// the newest sample at least rateWindow old (the oldest one until there is
// such a sample), 0 over less than 0.2 s. Called with mu held.
func (t *tally) rate(now time.Time, bytes int64) float64 {
	if n := len(t.samples); n > 0 && now.Before(t.samples[n-1].t) {
		now = t.samples[n-1].t // a clock read out of order
	}
	t.samples = append(t.samples, sample{now, bytes})
	i := 0
	for i+1 < len(t.samples)-1 && now.Sub(t.samples[i+1].t) >= rateWindow {
		i++
	}
	t.samples = t.samples[i:]
	first := t.samples[0]
	if d := now.Sub(first.t).Seconds(); d > 0.2 {
		return float64(bytes-first.bytes) / d
	}
	return 0
}

// NewBar draws progress on a terminal screen: while the plan is made, a
// spinner with what has been resolved; then the share of bytes done, the
// bytes of the total, the files done, the recent rate and an ETA. Until
// every transfer's size is known the total is estimated from those that
// are, and marked "~". It fits the terminal's width (what matters most
// stays at 50 columns), redraws in place ten times a second and clears
// itself at the end.
func NewBar(s *Screen) Progress {
	b := &barProgress{screen: s, stop: make(chan struct{}), start: time.Now()}
	b.wg.Add(1)
	go b.loop()
	return b
}

type barProgress struct {
	tally
	screen *Screen
	start  time.Time

	found   [foundKinds]atomic.Int64
	pipes   atomic.Int64 // pipelines the selection asks for (the newest K), 0 if not known
	started atomic.Bool

	frame int // of the spinner; touched by loop only

	stopOnce stdsync.Once
	stop     chan struct{}
	wg       stdsync.WaitGroup
}

func (b *barProgress) Found(k Found)   { b.found[k].Add(1) }
func (b *barProgress) Start(files int) { b.files.Store(int64(files)); b.started.Store(true) }

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

// line is the status line at now, at most width columns.
func (b *barProgress) line(now time.Time, width int) string {
	if !b.started.Load() {
		return b.spinner(width)
	}
	e := b.estimate(now)

	// Parts in the order they are shown, each with a priority: when the
	// line is too wide the least important go first.
	type part struct {
		text string
		prio int
	}
	var parts []part
	if e.frac >= 0 {
		parts = append(parts, part{fmt.Sprintf("%3.0f%%", 100*e.frac), 0})
	}
	barAt := len(parts)
	if e.total > 0 {
		parts = append(parts, part{bytesOf(e.done, e.total, e.guessed), 2})
	} else {
		parts = append(parts, part{HumanBytes(e.done), 2})
	}
	parts = append(parts, part{fmt.Sprintf("%d/%d files", e.filesDone, e.files), 1})
	parts = append(parts, part{HumanBytes(int64(e.rate)) + "/s", 4})
	if e.eta >= 0 {
		parts = append(parts, part{"ETA " + shortDuration(e.eta), 3})
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
	if w := min(width-used, 40); e.frac >= 0 && w >= 12 {
		texts = append(texts[:barAt:barAt], append([]string{drawBar(e.frac, w)}, texts[barAt:]...)...)
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

// bytesOf shows done of total, sharing the unit when it is the same, the
// total marked "~" when it is guessed: "312.4/740.0 MiB", "1.2/~740.0 MiB".
func bytesOf(done, total int64, guessed bool) string {
	d, t := HumanBytes(done), HumanBytes(total)
	if guessed {
		t = "~" + t
	}
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
// that is not a terminal (CI logs, cron mail), with no escape codes. Each
// line says the share done, the bytes done of the total (guessed, and
// marked "~", until every size is known), the recent rate, the ETA and the
// files done.
func NewLogProgress(log *slog.Logger, every time.Duration) Progress {
	return &logProgress{log: log, every: every}
}

type logProgress struct {
	tally
	log      *slog.Logger
	every    time.Duration
	stop     chan struct{}
	stopOnce stdsync.Once
	wg       stdsync.WaitGroup
}

func (p *logProgress) Found(Found) {}

func (p *logProgress) Start(files int) {
	p.files.Store(int64(files))
	if p.stop != nil {
		return // more files found while the first ones transfer
	}
	p.estimate(time.Now()) // the rate counts from here
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
			case now := <-t.C:
				p.log.Info("progress", p.attrs(now)...)
			}
		}
	}()
}

// attrs are the details of the progress line at now.
func (p *logProgress) attrs(now time.Time) []any {
	e := p.estimate(now)
	var attrs []any
	if e.frac >= 0 {
		total := HumanBytes(e.total)
		if e.guessed {
			total = "~" + total
		}
		attrs = append(attrs, "percent", int(math.Round(100*e.frac)), "done", HumanBytes(e.done), "total", total)
	} else {
		attrs = append(attrs, "done", HumanBytes(e.done))
	}
	attrs = append(attrs, "rate", HumanBytes(int64(e.rate))+"/s")
	if e.eta >= 0 {
		attrs = append(attrs, "eta", shortDuration(e.eta))
	}
	return append(attrs, "files_done", e.filesDone, "files", e.files)
}

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
	if b, ok := p.(*barProgress); ok && len(sel.Jobs) == 0 && len(sel.JobIDs) == 0 && sel.PipelineID == "" && sel.PipelineNumber == 0 && len(sel.Workflows) == 0 && sel.Since.IsZero() {
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

func (o *observedAPI) PipelinesSince(ctx context.Context, slug circleci.Slug, branch string, since time.Time) iter.Seq2[circleci.Pipeline, error] {
	return observeSeq(o.API.PipelinesSince(ctx, slug, branch, since), o.found(FoundPipeline))
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
