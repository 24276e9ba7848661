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
	// Verify re-hashes every artifact the manifest records at the
	// destination and fetches again those that do not match (size or
	// SHA-256), such as a file of zeros a failing disk left.
	Verify bool

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
	// MaxStall is how long an artifact may fail without keeping a byte more
	// before it counts as failed (DefaultMaxStall if 0). Retries bounds the
	// attempts in a row that keep nothing more.
	MaxStall time.Duration
	// MaxArtifactSize fails, without a transfer, an artifact whose download
	// declares more bytes, and one that declares no length once more bytes
	// arrive (DefaultMaxArtifactSize if 0).
	MaxArtifactSize int64

	// Open opens the destination for a Pull given none: it is called once
	// the API has confirmed the project, and returns the sink and where the
	// manifest lives (nil: in the sink), as Manifest does.
	Open func(ctx context.Context) (sink.Sink, manifest.Store, error)

	Log      *slog.Logger
	Progress Progress  // nil: none
	Out      io.Writer // dry-run plan
	JSON     bool      // the dry-run plan as one JSON object per artifact
}

// Failure is one artifact that was not transferred, or one job whose
// artifacts could not be listed (then Path is empty and JobName is set).
type Failure struct {
	JobNumber int64  `json:"job_number"`
	JobName   string `json:"job_name,omitempty"`
	NodeIndex int64  `json:"node_index"`
	Path      string `json:"path"`
	Error     string `json:"error"`
	// Cause is Error without what names this artifact or job: the same
	// for every failure of one cause, which the summary groups.
	Cause string `json:"cause"`
}

// Summary counts what a run did; it is also the --json summary.
type Summary struct {
	Artifacts   int           `json:"artifacts"`
	Transferred int           `json:"transferred"`
	Skipped     int           `json:"skipped"`
	Failed      int           `json:"failed"`
	Bytes       int64         `json:"bytes"` // downloaded by this run: not what an earlier run kept
	Failures    []Failure     `json:"failures"`
	Passed      []Skipped     `json:"-"`
	Elapsed     time.Duration `json:"-"`
	Destination string        `json:"destination"`
	DryRun      bool          `json:"dry_run,omitempty"`

	// DiskErrors counts the flushes of the destination that failed, and
	// WrittenAgain the artifacts they covered that the run wrote again
	// and recorded (counted in Transferred too).
	DiskErrors   int `json:"disk_errors,omitempty"`
	WrittenAgain int `json:"written_again,omitempty"`

	// InFlight counts the artifacts being transferred when the run
	// stopped, and KeptBytes what the destination keeps of them for the
	// next run to resume (see Unfinished).
	InFlight  int   `json:"in_flight"`
	KeptBytes int64 `json:"kept_bytes"`
	// JobsFailed counts the jobs whose artifacts could not be listed: each
	// is a failure entry, counted in Failed with the artifacts that failed.
	JobsFailed int `json:"jobs_failed,omitempty"`
	// FinishedWorkflows and FinishedJobs count what an earlier run
	// finished for good and this one passed over without listing it (the
	// jobs of those workflows included); their artifacts count as already
	// done.
	FinishedWorkflows int `json:"finished_workflows,omitempty"`
	FinishedJobs      int `json:"finished_jobs,omitempty"`
}

// ErrCollision is returned, before anything is transferred, when the layout
// puts two artifacts on one key.
var ErrCollision = errors.New("layout puts two artifacts on one key")

// ErrOtherProject is the error of a pipeline or workflow, given by ID,
// that belongs to another project than the slug names: a mistake in what
// was given, like a bad slug.
var ErrOtherProject = errors.New("belongs to another project")

// ErrNoManifest is Verify's error for a destination with no manifest: a
// mistake in what was given (no pull there yet, or another --manifest), not
// a problem found in the mirror.
var ErrNoManifest = errors.New("no manifest")

// Pull mirrors the artifacts sel selects into dest, recording each transfer
// in the manifest so a rerun resumes. It returns a summary even on error.
// Failures of single artifacts are counted in the summary, not returned; the
// error is for what stops the run: usage, authentication, destination,
// manifest and lock problems, and cancellation.
//
// The API resolves the selection from the start, while the destination is
// set up (opened, locked, its manifest read and its objects listed), so
// neither waits for the other's round trips. With a nil dest, Pull opens
// it with opts.Open once the API has confirmed the project.
func Pull(ctx context.Context, api API, dl Downloader, slug circleci.Slug, sel *Selection, dest sink.Sink, opts PullOptions) (_ *Summary, err error) {
	start := time.Now()
	e := &engine{api: api, dl: dl, dest: dest, opts: opts, log: opts.Log}
	e.defaults()
	sum := &Summary{DryRun: opts.DryRun, Failures: []Failure{}}
	e.sum = sum
	defer func() { sum.Elapsed = time.Since(start) }()
	if dest == nil && opts.Open == nil {
		return sum, errors.New("pull: no destination")
	}

	ctx, cancel := context.WithCancelCause(ctx)
	l := e.startListing(ctx, api, slug, sel)
	defer func() {
		cancel(nil)
		<-l.done
	}()

	if dest == nil {
		// A rejected token or an unknown project stops the run before the
		// destination is touched: a new DEST is neither created nor locked.
		if _, err := api.Project(ctx, slug); err != nil {
			return sum, fmt.Errorf("project %s: %w", slug, err)
		}
		d, store, err := opts.Open(ctx)
		if err != nil {
			return sum, err
		}
		dest, e.dest = d, d
		opts.Manifest = store
	}
	sum.Destination = dest.String()

	var lease sink.Lease
	if locker, ok := dest.(sink.Locker); ok && !opts.DryRun {
		l, lockErr := locker.Lock(ctx, sink.DefaultLockName, holder(opts.Run), 2*time.Minute)
		if lockErr != nil {
			return sum, lockErr
		}
		e.log.Debug("lock held", "destination", dest.String())
		lease = l
		// A lease lost mid-run (taken over, or not renewable in time) stops
		// this run before it writes beside the new holder: Pull returns the
		// lease's reason, and what it did not finish counts as failed.
		go func() {
			select {
			case <-lease.Lost():
				cancel(lease.Err())
			case <-ctx.Done():
			}
		}()
		defer func() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			if err := lease.Release(rctx); err != nil {
				e.log.Warn("releasing the lock", "error", err)
			}
			e.log.Debug("lock released")
		}()
		defer func() {
			if lerr := lease.Err(); lerr != nil {
				err = lerr // Pull's result
				sum.failUnfinished()
			}
		}()
		opts.Manifest = leaseManifest(dest, opts.Manifest, lease)
		if t, ok := dest.(uploadTidier); ok {
			if err := t.TidyUploads(ctx); err != nil {
				e.log.Warn("cleaning up unfinished uploads that earlier runs left", "error", err)
			}
		}
	}

	store, recorded := manifestStore(dest, opts.Manifest)
	mopts := manifest.Options{Destination: recorded, ToolVersion: opts.ToolVersion, Run: opts.Run}
	e.disk = &disk{e: e, store: store, stop: cancel, lost: map[string]bool{}, suspects: map[string]bool{}, confirmed: map[string]bool{},
		again: map[string]*Artifact{}, retried: map[string]bool{}}
	if b, ok := dest.(sink.Batcher); ok && !opts.DryRun && b.Batch() {
		// Files are placed without their fsyncs; each manifest write
		// first makes durable everything placed before it, so a record
		// never names data a power cut could still take, and a failed
		// flush unrecords what it covered (see disk).
		e.disk.batch = b
		e.disk.newer = map[string]recordedAtKey{}
		mopts.Durable = e.disk.durable
	}
	// A snapshot a power cut left unreadable is rebuilt from what
	// survives, under the lock taken above; a dry run only looks.
	mopts.Rebuild = manifest.RebuildAside
	if opts.DryRun {
		mopts.Rebuild = manifest.RebuildInMemory
	}
	m, err := manifest.Open(ctx, store, mopts)
	if err != nil {
		return sum, err
	}
	if r := m.Rebuilt(); r != nil {
		e.log.Warn(r.String())
	}
	e.disk.loadSuspects(ctx)
	if !opts.DryRun {
		defer func() {
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			e.disk.finish(fctx, m.Close(fctx) == nil)
			if serr := e.disk.stopped(); serr != nil {
				err = serr // Pull's result
				sum.failUnfinished()
			}
		}()
	}
	e.log.Debug("manifest loaded", "entries", m.Len())
	e.man = m
	e.commits = &committer{man: m, limit: uint64(e.opts.Concurrency), log: e.log, disk: e.disk}
	e.downloads = make(chan struct{}, e.opts.Concurrency)
	e.rangeStreams = make(chan struct{}, e.opts.Concurrency)
	if err := e.probeFolding(ctx); err != nil {
		return sum, closeManifest(ctx, m, opts.DryRun, err)
	}
	e.present = newDestIndex(dest, e.fold.how)
	close(l.ready) // the listing may plan now

	if l.streaming {
		err = e.stream(ctx, l)
		l.markFinished(err)
		return sum, e.closeManifest(ctx, m, err)
	}

	// Plan: list everything, check paths and keys, refuse collisions.
	<-l.done
	if err = e.listed(l.sel, l.skipped, l.err); err != nil {
		return sum, closeManifest(ctx, m, opts.DryRun, err)
	}
	arts := l.arts
	sortPtrs(arts)
	todo, err := e.plan(ctx, arts)
	if err != nil {
		return sum, closeManifest(ctx, m, opts.DryRun, err)
	}
	if opts.DryRun {
		e.printPlan(arts, todo)
		return sum, nil
	}

	err = e.transferAll(ctx, todo)
	l.markFinished(err)
	return sum, e.closeManifest(ctx, m, err)
}

// markFinished marks what this run finished for good, if it ended well.
func (l *listing) markFinished(err error) {
	if err != nil || l.finished == nil {
		return
	}
	if !l.streaming {
		for _, a := range l.arts {
			l.jobs[a.JobNumber] = append(l.jobs[a.JobNumber], listedArtifact{a.NodeIndex, a.Path, a.Key})
		}
	}
	l.finished.mark(l.jobs)
}

// listing is the resolution of the selection and the listing of its jobs'
// artifacts, under way in the background from the start of a Pull.
type listing struct {
	sel       *Selection
	streaming bool          // each job's plan is made and queued as it is listed
	ready     chan struct{} // closed once the engine can plan (manifest open)
	done      chan struct{} // closed when the listing has ended

	// Set before done is closed.
	skipped []Skipped
	err     error
	arts    []*Artifact // everything listed, unless streaming

	// Streaming: what was queued, and a plan's error (which stops the run).
	queue   *queue
	queued  int
	planErr error

	// finished passes over what earlier runs finished for good (not with
	// --force or --verify) and marks what this one finishes; nil in a dry
	// run. jobs holds what it needs of each listed job's artifacts.
	finished *finished
	jobs     map[int64][]listedArtifact
}

// startListing starts resolving sel and listing the artifacts of its jobs.
// Without streaming it gathers them for one plan; when streaming (a
// Disjoint layout, and not a dry run) it plans each job's artifacts as soon
// as its listing has ended, once ready is closed, and queues the transfers.
func (e *engine) startListing(ctx context.Context, api API, slug circleci.Slug, sel *Selection) *listing {
	l := &listing{
		sel:       sel,
		streaming: !e.opts.DryRun && e.opts.Layout.Disjoint(),
		ready:     make(chan struct{}),
		done:      make(chan struct{}),
		queue:     newQueue(),
		jobs:      map[int64][]listedArtifact{},
	}
	if !e.opts.DryRun {
		s := *sel
		l.sel = &s
		l.finished = newFinished(e, slug, l.sel, l.ready)
		l.sel.finished = l.finished
	}
	sel = l.sel
	go func() {
		defer close(l.done)
		l.skipped, l.err = CollectJobs(ctx, observeAPI(api, e.opts.Progress, sel), slug, sel, e.log, func(j Job, found []Artifact) {
			arts := make([]*Artifact, len(found))
			for i := range found {
				arts[i] = &found[i]
			}
			if !l.streaming {
				l.arts = append(l.arts, arts...)
				l.jobs[j.JobNumber] = nil // listed; markFinished adds its artifacts
				return
			}
			// Once planned, the artifacts' keys are known.
			defer func() { l.jobs[j.JobNumber] = listedArtifacts(arts) }()
			select {
			case <-l.ready:
			case <-ctx.Done():
				return
			}
			if l.planErr != nil || len(arts) == 0 {
				return
			}
			sortPtrs(arts)
			todo, err := e.plan(ctx, arts)
			if err != nil {
				l.planErr = err
				return
			}
			if len(todo) > 0 {
				l.queued += len(todo)
				e.opts.Progress.Start(l.queued)
				l.queue.push(todo)
			}
		})
	}()
	return l
}

// listed takes in what Collect returned: the jobs passed over, the jobs
// whose listing failed alone (each a failure), and what stops the run.
func (e *engine) listed(sel *Selection, skipped []Skipped, err error) error {
	e.sum.Passed = skipped
	for _, msg := range sel.UnmatchedGlobs() {
		e.log.Warn(msg)
	}
	var listing *ListingError
	if errors.As(err, &listing) {
		// Those jobs fail alone; a rerun lists them again.
		for _, f := range listing.Jobs {
			e.failJob(f)
		}
		err = nil
	}
	return err
}

// stream transfers what the listing queues, while the other jobs are still
// being resolved and listed: for a Disjoint layout, whose one-job plans are
// the whole plan. What stops the listing stops the transfers, and the other
// way round.
func (e *engine) stream(ctx context.Context, l *listing) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	worked := make(chan error, 1)
	go func() {
		err := e.work(ctx, l.queue)
		if err != nil {
			cancel(err) // stops the listing too
		}
		worked <- err
	}()
	defer e.opts.Progress.Finish()
	var err error
	select {
	case <-l.done:
		err = e.listed(l.sel, l.skipped, l.err)
		if l.planErr != nil {
			err = l.planErr
		}
		if err != nil {
			cancel(err)
		}
		e.opts.Progress.Start(l.queued)
	case <-ctx.Done():
		// A transfer stopped the run (or the run was stopped): the
		// listing ends with it, and Pull waits for that.
	}
	l.queue.close()
	werr := <-worked
	if err == nil && werr == nil {
		werr = e.writeAgain(ctx)
	}
	switch {
	case err != nil && !errors.Is(err, context.Canceled):
		return err
	case werr != nil:
		return werr
	case err != nil:
		return err
	}
	return ctx.Err()
}

// closeManifest closes m after the transfers, logging when they ended and
// when the manifest was written: with the lock's and the destination's
// lines, the phases of a run at -v (where a short run's time goes).
func (e *engine) closeManifest(ctx context.Context, m *manifest.Manifest, err error) error {
	e.log.Debug("transfers ended")
	err = closeManifest(ctx, m, false, err)
	e.log.Debug("manifest written")
	return err
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
	disk    *disk      // unrecords what a failed flush of the destination covered
	// present is what the destination holds, listed as the plan asks.
	present *destIndex

	// downloads holds one token per response body being read: at most
	// Concurrency at once. A transfer gives its token back as soon as the
	// body ends, so the next download starts while the sink still fsyncs
	// and renames the last one; the disk's latency overlaps the network's
	// instead of adding to it.
	downloads chan struct{}
	// rangeStreams bounds the extra connections of multi-stream downloads
	// across all transfers: Concurrency of them.
	rangeStreams chan struct{}
	pool         streamPool // lends those connections to the split downloads

	fold folds // how the destination compares names; see refuseFolded

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
	if e.opts.MaxStall <= 0 {
		e.opts.MaxStall = DefaultMaxStall
	}
	if e.opts.MaxArtifactSize <= 0 {
		e.opts.MaxArtifactSize = DefaultMaxArtifactSize
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
// artifacts to one key, and returns what is still to transfer: what the
// manifest does not record, and what it records but the destination no
// longer holds at its recorded size (a listing of the key's top folder
// tells; see destIndex).
// With a Disjoint layout it is called once per job, and two artifacts on
// one key can only be paths of one job node that clean to the same (the
// API listing "a//b" and "a/b"): those two fail alone.
func (e *engine) plan(ctx context.Context, arts []*Artifact) ([]*Artifact, error) {
	e.mu.Lock()
	e.sum.Artifacts += len(arts)
	e.mu.Unlock()
	owner := make(map[string]*Artifact, len(arts))
	clash := map[*Artifact]*Artifact{}
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
			if !e.opts.Layout.Disjoint() {
				return nil, fmt.Errorf("%w: job %d node %d %q and job %d node %d %q both land on %q; use a --layout with {job_number}, {node_index} and {path}",
					ErrCollision, prev.JobNumber, prev.NodeIndex, prev.Path, a.JobNumber, a.NodeIndex, a.Path, a.Key)
			}
			clash[a], clash[prev] = prev, a
			continue
		}
		owner[a.Key] = a
	}
	// A key that is a folder of another key ("report" and "report/x"):
	// with a Disjoint layout, two paths of one job node, which the build
	// made; both fail, alone, as the job's transfers may have begun. Any
	// other layout may have put them together, and the plan is whole
	// before any transfer: the run is refused, as for two on one key.
	for _, a := range arts {
		key := a.Key
		if key == "" || owner[key] != a {
			continue
		}
		for i := strings.IndexByte(key, '/'); i >= 0; i = nextSlash(key, i) {
			other, ok := owner[key[:i]]
			if !ok {
				continue
			}
			if !e.opts.Layout.Disjoint() {
				return nil, folderClash(other, a)
			}
			clash[a], clash[other] = other, a
		}
	}
	refused := make(map[*Artifact]error, len(clash))
	for a, other := range clash {
		if a.Key == other.Key {
			refused[a] = &causedError{fmt.Sprintf("refused: job %d node %d %q and %q both land on %q", other.JobNumber, other.NodeIndex, other.Path, a.Path, a.Key),
				"refused: two paths of one job node land on one key"}
		} else {
			refused[a] = &causedError{fmt.Sprintf("refused: %q and job %d node %d %q would need %q as a file and as a folder at once", a.Key, other.JobNumber, other.NodeIndex, other.Path, min(a.Key, other.Key)),
				"refused: two paths of one job node would need one name as a file and as a folder at once"}
		}
	}
	e.refuseFolded(arts, owner, refused)
	for _, a := range arts {
		if a.Key == "" {
			continue
		}
		if err := refused[a]; err != nil {
			e.fail(a, err)
			a.Key = ""
			continue
		}
		if !e.opts.Force {
			if ent, ok := e.man.Lookup(manifestID(a)); ok && ent.Key == a.Key {
				size, ok, err := e.present.size(ctx, a.Key)
				if err != nil {
					return nil, err
				}
				if ok && size == ent.Size {
					problem := e.recheck(ctx, ent)
					if problem == "" {
						e.mu.Lock()
						e.sum.Skipped++
						e.mu.Unlock()
						continue
					}
					e.log.Info("recorded artifact does not match its record at the destination; fetching it again", "job", a.JobNumber, "node", a.NodeIndex, "path", a.Path, "problem", problem)
				} else {
					e.log.Info("recorded artifact missing or resized at the destination; fetching it again", "job", a.JobNumber, "node", a.NodeIndex, "path", a.Path)
				}
			}
		}
		todo = append(todo, a)
	}
	return e.unblocked(ctx, todo), nil
}

// nextSlash is the index of the next '/' in key after i, or -1.
func nextSlash(key string, i int) int {
	j := strings.IndexByte(key[i+1:], '/')
	if j < 0 {
		return -1
	}
	return i + 1 + j
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
		return &causedError{fmt.Sprintf("key %q is inside %s/, which artifact-sync keeps for itself", key, StateDir),
			fmt.Sprintf("the key is inside %s/, which artifact-sync keeps for itself", StateDir)}
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
	e.sum.Failures = append(e.sum.Failures, Failure{JobNumber: a.JobNumber, NodeIndex: a.NodeIndex, Path: a.Path, Error: err.Error(), Cause: causeOf(err)})
	// Reported once, in the summary; as it happens only at -v.
	e.log.Debug("artifact failed", "job", a.JobNumber, "node", a.NodeIndex, "path", a.Path, "error", err)
}

// failJob counts a job whose artifacts could not be listed.
func (e *engine) failJob(f JobFailure) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.sum.Failed++
	e.sum.JobsFailed++
	e.sum.Failures = append(e.sum.Failures, Failure{JobNumber: f.JobNumber, JobName: f.JobName,
		Error: "listing its artifacts: " + f.Err.Error(), Cause: "listing its artifacts: " + causeOf(f.Err)})
	// Reported once, in the summary; as it happens only at -v.
	e.log.Debug("job failed", "job", f.JobNumber, "name", f.JobName, "error", f.Err)
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

// transferAll runs the transfers of todo with bounded workers.
func (e *engine) transferAll(ctx context.Context, todo []*Artifact) error {
	e.opts.Progress.Start(len(todo))
	defer e.opts.Progress.Finish()
	q := newQueue()
	q.push(todo)
	q.close()
	err := e.work(ctx, q)
	if err == nil {
		err = e.writeAgain(ctx)
	}
	if err == nil {
		err = ctx.Err()
	}
	return err
}

// work transfers what q holds until it is closed and empty, with bounded
// workers. One artifact's failure is counted; authentication, destination
// and cancellation errors stop the workers and are returned.
func (e *engine) work(ctx context.Context, q *queue) error {
	g, gctx := errgroup.WithContext(ctx)
	// Concurrency transfers download (see engine.downloads) while as many
	// more finish writing what they downloaded.
	for range 2 * e.opts.Concurrency {
		g.Go(func() error {
			for {
				a, ok := q.pop(gctx)
				if !ok {
					return gctx.Err()
				}
				err := e.transfer(gctx, a)
				e.opts.Progress.FileDone()
				var f *fatal
				switch {
				case err == nil:
					continue
				case errors.As(err, &f):
					e.inFlight(ctx, a)
					return f.err
				case gctx.Err() != nil:
					e.inFlight(ctx, a)
					return gctx.Err()
				case errors.As(err, new(*notDurable)):
					e.disk.lose(a) // written again after the others
				}
				e.fail(a, err)
			}
		})
	}
	return g.Wait()
}

// queue hands artifacts to the transfer workers: pushed while jobs are
// listed, popped by whichever worker is free.
type queue struct {
	mu     stdsync.Mutex
	items  []*Artifact
	closed bool
	ready  chan struct{} // a token while items wait; closed by close
}

func newQueue() *queue { return &queue{ready: make(chan struct{}, 1)} }

func (q *queue) signal() {
	if !q.closed && len(q.items) > 0 {
		select {
		case q.ready <- struct{}{}:
		default:
		}
	}
}

func (q *queue) push(arts []*Artifact) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.items = append(q.items, arts...)
	q.signal()
}

// close says nothing more comes: pop returns false once q is empty.
func (q *queue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.closed = true
		close(q.ready)
	}
}

// pop takes the next artifact, waiting for one; false when q is closed and
// empty or ctx is done.
func (q *queue) pop(ctx context.Context) (*Artifact, bool) {
	for {
		if ctx.Err() != nil {
			return nil, false
		}
		q.mu.Lock()
		if len(q.items) > 0 {
			a := q.items[0]
			q.items[0] = nil
			q.items = q.items[1:]
			q.signal() // wake the next worker while items wait
			q.mu.Unlock()
			return a, true
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return nil, false
		}
		select {
		case <-q.ready:
		case <-ctx.Done():
		}
	}
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
