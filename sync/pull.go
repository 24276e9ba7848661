package sync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	stdsync "sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"golang.org/x/sync/errgroup"

	"github.com/artifact-sync/artifact-sync/circleci"
	"github.com/artifact-sync/artifact-sync/manifest"
	"github.com/artifact-sync/artifact-sync/sink"
)

// DefaultConcurrency is the number of transfers at once unless -j says
// otherwise. Small artifacts cost a round trip each, so their time is
// latency × files / concurrency: 16 moves 2,000 small files ≥10× faster
// than one at a time while staying within CircleCI's limits and a 2-core
// machine's (see the README's Performance section for the measurements).
const DefaultConcurrency = 16

// DefaultRetries is the number of attempts per artifact unless --retries says
// otherwise.
const DefaultRetries = 5

// Downloader fetches an artifact URL the API returned, from offset (with
// If-Range ifRange when not empty).
type Downloader interface {
	Download(ctx context.Context, rawURL string, offset int64, ifRange string) (*http.Response, error)
}

// PullOptions configure Pull. Zero values mean the documented defaults.
type PullOptions struct {
	Layout      *Layout // nil: DefaultLayout
	Concurrency int
	Retries     int
	DryRun      bool
	Force       bool

	// Manifest is where the manifest's files live; nil means ManifestPrefix
	// in the destination sink.
	Manifest manifest.Store

	ToolVersion string
	Run         string // run id recorded with every entry

	// MultiThreadStreams is how many connections fetch one artifact of
	// MultiThreadCutoff bytes or more, in ranges, when the server takes
	// ranges and the destination can take pieces (a directory). 0 means
	// DefaultMultiThreadStreams and 1 turns it off.
	MultiThreadStreams int
	MultiThreadCutoff  int64
	// MultiThreadFastRate is the rate, in bytes per second, at which the
	// first connection of a multi-stream download is kept alone (see
	// DefaultMultiThreadFastRate); 0 means the default.
	MultiThreadFastRate int64

	// RetryInitial and RetryMax shape the backoff between attempts of one
	// artifact (defaults 1s and 30s); tests make them small.
	RetryInitial, RetryMax time.Duration

	Log      *slog.Logger
	Progress Progress  // nil: none
	Out      io.Writer // dry-run plan
	JSON     bool      // the dry-run plan as one JSON object per artifact
}

// Failure is one artifact that was not transferred.
type Failure struct {
	JobNumber int64  `json:"job_number"`
	NodeIndex int64  `json:"node_index"`
	Path      string `json:"path"`
	Error     string `json:"error"`
}

// Summary counts what a run did; it is also the --json summary.
type Summary struct {
	Artifacts   int           `json:"artifacts"`
	Transferred int           `json:"transferred"`
	Skipped     int           `json:"skipped"`
	Failed      int           `json:"failed"`
	Bytes       int64         `json:"bytes"`
	Failures    []Failure     `json:"failures"`
	Passed      []Skipped     `json:"-"`
	Elapsed     time.Duration `json:"-"`
	Destination string        `json:"destination"`
	DryRun      bool          `json:"dry_run,omitempty"`
}

// ErrCollision is returned, before anything is transferred, when the layout
// puts two artifacts on one key.
var ErrCollision = errors.New("layout puts two artifacts on one key")

// Pull mirrors the artifacts sel selects into dest, recording each transfer
// in the manifest so a rerun resumes. It returns a summary even on error.
// Failures of single artifacts are counted in the summary, not returned; the
// error is for what stops the run: usage, authentication, destination,
// manifest and lock problems, and cancellation.
func Pull(ctx context.Context, api API, dl Downloader, slug circleci.Slug, sel *Selection, dest sink.Sink, opts PullOptions) (*Summary, error) {
	start := time.Now()
	e := &engine{api: api, dl: dl, dest: dest, opts: opts, log: opts.Log}
	e.defaults()
	sum := &Summary{Destination: dest.String(), DryRun: opts.DryRun, Failures: []Failure{}}
	e.sum = sum
	defer func() { sum.Elapsed = time.Since(start) }()

	var lease sink.Lease
	if locker, ok := dest.(sink.Locker); ok && !opts.DryRun {
		l, err := locker.Lock(ctx, sink.DefaultLockName, holder(opts.Run), 2*time.Minute)
		if err != nil {
			return sum, err
		}
		lease = l
		// A lease lost mid-run (another run took an expired S3 lock over)
		// stops this one before it writes beside the new holder.
		var cancel context.CancelCauseFunc
		ctx, cancel = context.WithCancelCause(ctx)
		defer cancel(nil)
		go func() {
			select {
			case <-lease.Lost():
				cancel(fmt.Errorf("lost the lock on %s: %w", dest, lease.Err()))
			case <-ctx.Done():
			}
		}()
		defer func() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			if err := lease.Release(rctx); err != nil {
				e.log.Warn("releasing the lock", "error", err)
			}
		}()
	}

	store, recorded := manifestStore(dest, opts.Manifest)
	m, err := manifest.Open(ctx, store, manifest.Options{
		Destination: recorded, ToolVersion: opts.ToolVersion, Run: opts.Run,
	})
	if err != nil {
		return sum, err
	}
	e.man = m
	e.commits = &committer{man: m, limit: uint64(e.opts.Concurrency)}
	e.downloads = make(chan struct{}, e.opts.Concurrency)
	e.rangeStreams = make(chan struct{}, e.opts.Concurrency)

	// Plan: list everything, check paths and keys, refuse collisions.
	var arts []*Artifact
	skipped, err := Collect(ctx, observeAPI(api, e.opts.Progress), slug, sel, e.log, func(a Artifact) { arts = append(arts, &a) })
	sum.Passed = skipped
	for _, msg := range sel.UnmatchedGlobs() {
		e.log.Warn(msg)
	}
	if err != nil {
		return sum, closeManifest(ctx, m, opts.DryRun, err)
	}
	sortPtrs(arts)
	todo, err := e.plan(arts)
	if err != nil {
		return sum, closeManifest(ctx, m, opts.DryRun, err)
	}
	if opts.DryRun {
		e.printPlan(arts, todo)
		return sum, nil
	}

	err = e.transferAll(ctx, todo)
	return sum, closeManifest(ctx, m, false, err)
}

// closeManifest persists what the run recorded, even when ctx was cancelled,
// and joins its error to err.
func closeManifest(ctx context.Context, m *manifest.Manifest, readOnly bool, err error) error {
	if readOnly {
		return err
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if cerr := m.Close(cctx); cerr != nil {
		if err == nil {
			return cerr
		}
		return errors.Join(err, cerr)
	}
	return err
}

type engine struct {
	api  API
	dl   Downloader
	dest sink.Sink
	man  *manifest.Manifest
	opts PullOptions
	log  *slog.Logger

	commits *committer // writes man's records in groups

	// downloads holds one token per response body being read: at most
	// Concurrency at once. A transfer gives its token back as soon as the
	// body ends, so the next download starts while the sink still fsyncs
	// and renames the last one; the disk's latency overlaps the network's
	// instead of adding to it.
	downloads chan struct{}
	// rangeStreams bounds the extra connections of multi-stream downloads
	// across all transfers: Concurrency of them.
	rangeStreams chan struct{}

	mu  stdsync.Mutex
	sum *Summary
}

func (e *engine) defaults() {
	if e.opts.Layout == nil {
		e.opts.Layout, _ = ParseLayout(DefaultLayout)
	}
	if e.opts.Concurrency < 1 {
		e.opts.Concurrency = DefaultConcurrency
	}
	if e.opts.Retries < 1 {
		e.opts.Retries = DefaultRetries
	}
	if e.opts.MultiThreadStreams == 0 {
		e.opts.MultiThreadStreams = DefaultMultiThreadStreams
	}
	if e.opts.MultiThreadFastRate <= 0 {
		e.opts.MultiThreadFastRate = DefaultMultiThreadFastRate
	}
	if e.opts.MultiThreadCutoff <= 0 {
		e.opts.MultiThreadCutoff = DefaultMultiThreadCutoff
	}
	if e.opts.RetryInitial <= 0 {
		e.opts.RetryInitial = time.Second
	}
	if e.opts.RetryMax <= 0 {
		e.opts.RetryMax = 30 * time.Second
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.opts.Progress == nil {
		e.opts.Progress = nopProgress{}
	}
	if e.opts.Out == nil {
		e.opts.Out = io.Discard
	}
}

// plan checks every artifact's path and key, refuses a layout that maps two
// artifacts to one key, and returns what is still to transfer.
func (e *engine) plan(arts []*Artifact) ([]*Artifact, error) {
	e.sum.Artifacts = len(arts)
	owner := make(map[string]*Artifact, len(arts))
	var todo []*Artifact
	for _, a := range arts {
		clean, err := CleanPath(a.Path)
		if err == nil {
			a.CleanPath = clean
			a.Key = e.opts.Layout.Expand(a)
			err = checkKey(a.Key)
		}
		if err != nil {
			a.Key = ""
			e.fail(a, fmt.Errorf("refused: %w", err))
			continue
		}
		if prev, ok := owner[a.Key]; ok {
			return nil, fmt.Errorf("%w: job %d node %d %q and job %d node %d %q both land on %q; use a --layout with {job_number}, {node_index} and {path}",
				ErrCollision, prev.JobNumber, prev.NodeIndex, prev.Path, a.JobNumber, a.NodeIndex, a.Path, a.Key)
		}
		owner[a.Key] = a
		if !e.opts.Force {
			if ent, ok := e.man.Lookup(manifestID(a)); ok && ent.Key == a.Key {
				e.sum.Skipped++
				continue
			}
		}
		todo = append(todo, a)
	}
	return todo, nil
}

// checkKey refuses keys the sink would refuse and keys inside the tool's own
// folder, in any case and with trailing dots or spaces: file systems that
// ignore case (macOS, Windows) or those (Windows) would put ".Artifact-Sync/x"
// or ".artifact-sync./x" there too.
func checkKey(key string) error {
	if err := sink.ValidKey(key); err != nil {
		return err
	}
	first, _, _ := strings.Cut(key, "/")
	if strings.EqualFold(strings.TrimRight(first, ". "), StateDir) {
		return fmt.Errorf("key %q is inside %s/, which artifact-sync keeps for itself", key, StateDir)
	}
	return nil
}

func manifestID(a *Artifact) manifest.ID {
	return manifest.ID{Project: a.Project, JobNumber: a.JobNumber, NodeIndex: a.NodeIndex, Path: a.Path}
}

func (e *engine) fail(a *Artifact, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.sum.Failed++
	e.sum.Failures = append(e.sum.Failures, Failure{JobNumber: a.JobNumber, NodeIndex: a.NodeIndex, Path: a.Path, Error: err.Error()})
	// Reported once, in the summary; as it happens only at -v.
	e.log.Debug("artifact failed", "job", a.JobNumber, "node", a.NodeIndex, "path", a.Path, "error", err)
}

func (e *engine) printPlan(arts, todo []*Artifact) {
	pending := make(map[*Artifact]bool, len(todo))
	for _, a := range todo {
		pending[a] = true
	}
	enc := json.NewEncoder(e.opts.Out)
	enc.SetEscapeHTML(false)
	for _, a := range arts {
		step := planStep{Action: "done", Key: a.Key, JobNumber: a.JobNumber, NodeIndex: a.NodeIndex, Path: a.Path}
		switch {
		case a.Key == "":
			step.Action = "refuse"
			step.Error = e.refusal(a)
		case pending[a]:
			step.Action = "transfer"
		default:
			if ent, ok := e.man.Lookup(manifestID(a)); ok {
				step.Size = &ent.Size
			}
		}
		if e.opts.JSON {
			_ = enc.Encode(step)
			continue
		}
		if step.Action == "refuse" {
			fmt.Fprintf(e.opts.Out, "refuse    job %d node %d %q\n", a.JobNumber, a.NodeIndex, a.Path)
		} else {
			fmt.Fprintf(e.opts.Out, "%-9s %s\n", step.Action, Printable(a.Key))
		}
	}
}

// planStep is one line of a dry run's --json plan.
type planStep struct {
	Action    string `json:"action"` // transfer, done (recorded in the manifest) or refuse
	Key       string `json:"key,omitempty"`
	Size      *int64 `json:"size,omitempty"` // known for what the manifest records
	JobNumber int64  `json:"job_number"`
	NodeIndex int64  `json:"node_index"`
	Path      string `json:"path"`
	Error     string `json:"error,omitempty"`
}

// refusal is why the plan refused a.
func (e *engine) refusal(a *Artifact) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, f := range e.sum.Failures {
		if f.JobNumber == a.JobNumber && f.NodeIndex == a.NodeIndex && f.Path == a.Path {
			return f.Error
		}
	}
	return ""
}

// fatal marks errors that stop the whole run rather than one artifact.
type fatal struct{ err error }

func (f *fatal) Error() string { return f.err.Error() }
func (f *fatal) Unwrap() error { return f.err }

// transferAll runs the transfers with bounded workers. One artifact's failure
// is counted; authentication, destination and cancellation errors stop the
// group.
func (e *engine) transferAll(ctx context.Context, todo []*Artifact) error {
	e.opts.Progress.Start(len(todo))
	defer e.opts.Progress.Finish()
	g, gctx := errgroup.WithContext(ctx)
	// Concurrency transfers download (see engine.downloads) while as many
	// more finish writing what they downloaded.
	g.SetLimit(2 * e.opts.Concurrency)
	for _, a := range todo {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			err := e.transfer(gctx, a)
			e.opts.Progress.FileDone()
			var f *fatal
			switch {
			case err == nil:
				return nil
			case errors.As(err, &f):
				return f.err
			case gctx.Err() != nil:
				return gctx.Err()
			}
			e.fail(a, err)
			return nil
		})
	}
	err := g.Wait()
	if err == nil {
		err = ctx.Err()
	}
	return err
}

// transfer moves one artifact, retrying the whole GET -> sink unit.
func (e *engine) transfer(ctx context.Context, a *Artifact) error {
	ra := &retryAfter{BackOff: e.newBackOff()}
	b := backoff.WithContext(backoff.WithMaxRetries(ra, uint64(e.opts.Retries-1)), ctx)
	attempt := 0
	op := func() error {
		attempt++
		err := e.attempt(ctx, a)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return backoff.Permanent(ctx.Err())
		}
		var f *fatal
		if errors.As(err, &f) || !retryable(err) {
			return backoff.Permanent(err)
		}
		ra.after = circleci.RetryAfter(err)
		e.log.Debug("transfer attempt failed", "job", a.JobNumber, "node", a.NodeIndex, "path", a.Path, "attempt", attempt, "error", err)
		return err
	}
	err := backoff.Retry(op, b)
	if err != nil && attempt > 1 && ctx.Err() == nil {
		var f *fatal
		if !errors.As(err, &f) {
			err = fmt.Errorf("after %d attempts: %w", attempt, err)
		}
	}
	return err
}

// newBackOff is the wait between attempts of one transfer.
func (e *engine) newBackOff() backoff.BackOff {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     e.opts.RetryInitial,
		RandomizationFactor: 0.3,
		Multiplier:          2,
		MaxInterval:         e.opts.RetryMax,
		Stop:                backoff.Stop,
		Clock:               backoff.SystemClock,
	}
	b.Reset()
	return b
}

// retryAfter waits at least as long as the server's Retry-After asked.
type retryAfter struct {
	backoff.BackOff
	after time.Duration
}

func (r *retryAfter) NextBackOff() time.Duration {
	d := r.BackOff.NextBackOff()
	if d != backoff.Stop && r.after > d {
		d = min(r.after, 5*time.Minute)
	}
	r.after = 0
	return d
}

// attempt is one GET of the artifact streamed into the sink.
func (e *engine) attempt(ctx context.Context, a *Artifact) error {
	resumer, _ := e.dest.(sink.Resumer)
	var off int64
	var validator string
	if resumer != nil {
		p, err := resumer.Partial(ctx, a.Key)
		if err == nil && p.Size > 0 {
			off, validator = p.Size, p.Validator
		}
	}
	select {
	case e.downloads <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	done := stdsync.OnceFunc(func() { <-e.downloads })
	defer done()
	resp, err := e.dl.Download(ctx, a.URL, off, validator)
	if err != nil {
		e.opts.Progress.Size(a.Key, 0) // nothing comes from this attempt
		if errors.Is(err, circleci.ErrUnauthorized) || errors.Is(err, circleci.ErrForbidden) {
			return &fatal{fmt.Errorf("downloading job %d node %d %q: %w", a.JobNumber, a.NodeIndex, a.Path, err)}
		}
		return &sourceError{err}
	}
	defer resp.Body.Close()

	size := resp.ContentLength
	e.opts.Progress.Size(a.Key, size)
	src := &sourceReader{r: resp.Body, progress: e.opts.Progress, done: done}
	opts := sink.PutOptions{Size: size, Metadata: metadata(a), Validator: resp.Header.Get("ETag")}
	var info sink.Info
	switch {
	case off > 0 && resp.StatusCode == http.StatusPartialContent && rangeStart(resp) == off:
		if size >= 0 {
			opts.Size = off + size
		}
		e.log.Debug("resuming", "job", a.JobNumber, "node", a.NodeIndex, "path", a.Path, "bytes", off)
		info, err = resumer.PutFrom(ctx, a.Key, off, src, opts)
	case resp.StatusCode == http.StatusPartialContent:
		// A range we did not ask for, or not from where we asked: start over.
		if resumer != nil {
			_ = resumer.DiscardPartial(ctx, a.Key)
		}
		return &sourceError{fmt.Errorf("server answered a range request with %q; starting over", resp.Header.Get("Content-Range"))}
	default:
		if rw, rd, ok := e.multiStream(a, resp); ok {
			info, err = e.fetchRanges(ctx, a, resp, rw, rd, opts)
			if errors.Is(err, errRangesRefused) {
				a.noRanges = true
				e.log.Debug("ranges refused; fetching over one connection", "job", a.JobNumber, "node", a.NodeIndex, "path", a.Path, "error", err)
				return &sourceError{fmt.Errorf("%w: %w", io.ErrUnexpectedEOF, err)}
			}
			break
		}
		info, err = e.dest.Put(ctx, a.Key, src, opts)
	}
	if err != nil {
		if src.err != nil {
			return &sourceError{src.err}
		}
		if sink.IsPermanent(err) {
			return &fatal{err}
		}
		return err
	}
	if err := e.commits.record(ctx, manifest.Entry{
		ID: manifestID(a), Key: a.Key, Size: info.Size, SHA256: info.SHA256,
		ETag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified"),
	}); err != nil {
		return &fatal{err}
	}
	e.mu.Lock()
	e.sum.Transferred++
	e.sum.Bytes += info.Size
	e.mu.Unlock()
	return nil
}

// sourceError marks a failure on the CircleCI side of a transfer.
type sourceError struct{ err error }

func (s *sourceError) Error() string { return s.err.Error() }
func (s *sourceError) Unwrap() error { return s.err }

func retryable(err error) bool {
	var se *sourceError
	if errors.As(err, &se) {
		return circleci.IsRetryable(se.err) || errors.Is(se.err, io.ErrUnexpectedEOF)
	}
	// A sink error that is not permanent (a network hiccup to S3, a short
	// stream) is worth another attempt.
	return !sink.IsPermanent(err)
}

// sourceReader remembers the download's own read error, so a failed Put can
// be blamed on the right side, and counts bytes for progress.
type sourceReader struct {
	r        io.Reader
	err      error
	progress Progress
	done     func() // called once the body has ended, however it ended
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.progress.AddBytes(int64(n))
	}
	if err != nil {
		if err != io.EOF {
			s.err = err
		}
		if s.done != nil {
			s.done()
		}
	}
	return n, err
}

func rangeStart(resp *http.Response) int64 {
	cr := resp.Header.Get("Content-Range") // bytes START-END/TOTAL
	rest, ok := strings.CutPrefix(cr, "bytes ")
	if !ok {
		return -1
	}
	startStr, _, ok := strings.Cut(rest, "-")
	if !ok {
		return -1
	}
	n, err := strconv.ParseInt(startStr, 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// metadata records the artifact's source with the object where the sink can.
func metadata(a *Artifact) map[string]string {
	return map[string]string{
		"project":    a.Project,
		"job-number": strconv.FormatInt(a.JobNumber, 10),
		"node-index": strconv.FormatInt(a.NodeIndex, 10),
		"path":       url.PathEscape(a.Path),
	}
}

// holder names this process in lock messages.
func holder(run string) string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s pid %d run %s", host, os.Getpid(), run)
}

func sortPtrs(arts []*Artifact) {
	slices.SortFunc(arts, func(a, b *Artifact) int { return compareArtifacts(a, b) })
}
