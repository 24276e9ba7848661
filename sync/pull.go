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
	// declares more bytes (DefaultMaxArtifactSize if 0).
	MaxArtifactSize int64

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
func Pull(ctx context.Context, api API, dl Downloader, slug circleci.Slug, sel *Selection, dest sink.Sink, opts PullOptions) (_ *Summary, err error) {
	start := time.Now()
	e := &engine{api: api, dl: dl, dest: dest, opts: opts, log: opts.Log}
	e.defaults()
	sum := &Summary{Destination: dest.String(), DryRun: opts.DryRun, Failures: []Failure{}}
	e.sum = sum
	defer func() { sum.Elapsed = time.Since(start) }()

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
		var cancel context.CancelCauseFunc
		ctx, cancel = context.WithCancelCause(ctx)
		defer cancel(nil)
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
		}()
		defer func() {
			if lerr := lease.Err(); lerr != nil {
				err = lerr // Pull's result
				sum.Failed += max(0, sum.Artifacts-sum.Transferred-sum.Skipped-sum.Failed)
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
	m, err := manifest.Open(ctx, store, manifest.Options{
		Destination: recorded, ToolVersion: opts.ToolVersion, Run: opts.Run,
	})
	if err != nil {
		return sum, err
	}
	e.log.Debug("manifest loaded", "entries", m.Len())
	e.man = m
	e.commits = &committer{man: m, limit: uint64(e.opts.Concurrency), log: e.log}
	e.downloads = make(chan struct{}, e.opts.Concurrency)
	e.rangeStreams = make(chan struct{}, e.opts.Concurrency)
	if !opts.Force {
		// What the destination holds is listed while the API resolves.
		lctx, cancel := context.WithCancel(ctx)
		e.present = e.listDest(lctx)
		defer func() { cancel(); e.present() }()
	}

	// Plan: list everything, check paths and keys, refuse collisions.
	var arts []*Artifact
	skipped, err := Collect(ctx, observeAPI(api, e.opts.Progress, sel), slug, sel, e.log, func(a Artifact) { arts = append(arts, &a) })
	sum.Passed = skipped
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
	if err != nil {
		return sum, closeManifest(ctx, m, opts.DryRun, err)
	}
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
	// present waits for the listing of the destination (see listDest);
	// nil with --force.
	present func() (map[string]int64, error)

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
// longer holds at its recorded size (one listing of the destination tells).
func (e *engine) plan(ctx context.Context, arts []*Artifact) ([]*Artifact, error) {
	var present map[string]int64 // key -> size at the destination; nil until needed
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
	}
	// A key that is a folder of another key ("report" and "report/x") is a
	// clash the build made and the user cannot fix: both fail, alone.
	clash := map[*Artifact]*Artifact{}
	for key, a := range owner {
		for i := strings.IndexByte(key, '/'); i >= 0; i = nextSlash(key, i) {
			if other, ok := owner[key[:i]]; ok {
				clash[a], clash[other] = other, a
			}
		}
	}
	for _, a := range arts {
		if a.Key == "" {
			continue
		}
		if other, ok := clash[a]; ok {
			e.fail(a, fmt.Errorf("refused: %q and job %d node %d %q would need %q as a file and as a folder at once", a.Key, other.JobNumber, other.NodeIndex, other.Path, min(a.Key, other.Key)))
			a.Key = ""
			continue
		}
		if !e.opts.Force {
			if ent, ok := e.man.Lookup(manifestID(a)); ok && ent.Key == a.Key {
				if present == nil {
					var err error
					if present, err = e.present(); err != nil {
						return nil, err
					}
				}
				if size, ok := present[a.Key]; ok && size == ent.Size {
					e.sum.Skipped++
					continue
				}
				e.log.Info("recorded artifact missing or resized at the destination; fetching it again", "job", a.JobNumber, "node", a.NodeIndex, "path", a.Path)
			}
		}
		todo = append(todo, a)
	}
	return todo, nil
}

// nextSlash is the index of the next '/' in key after i, or -1.
func nextSlash(key string, i int) int {
	j := strings.IndexByte(key[i+1:], '/')
	if j < 0 {
		return -1
	}
	return i + 1 + j
}

// listDest starts listing, in the background, the sizes of the objects
// at the destination under the first folders of the keys the manifest
// records, and returns a function that waits for the listing. The folders
// are listed concurrently (few requests in flight), so on S3 ten thousand
// recorded artifacts in ten jobs cost one round of page requests, not ten
// pages one after the other; with no folders, or very many, the whole
// destination is listed.
func (e *engine) listDest(ctx context.Context) func() (map[string]int64, error) {
	if e.man.Len() == 0 {
		return func() (map[string]int64, error) { return map[string]int64{}, nil }
	}
	prefixes := map[string]bool{}
	for ent := range e.man.Entries() {
		first, _, ok := strings.Cut(ent.Key, "/")
		if !ok || len(prefixes) > 1000 {
			prefixes = map[string]bool{"": true}
			break
		}
		prefixes[first+"/"] = true
	}
	var (
		mu      stdsync.Mutex
		present = make(map[string]int64, e.man.Len())
		g       errgroup.Group
	)
	g.SetLimit(8)
	for prefix := range prefixes {
		g.Go(func() error {
			for info, err := range e.dest.List(ctx, prefix) {
				if err != nil {
					return fmt.Errorf("listing %s to check what is recorded there: %w", e.dest, err)
				}
				mu.Lock()
				present[info.Key] = info.Size
				mu.Unlock()
			}
			return nil
		})
	}
	done := make(chan error, 1)
	go func() {
		err := g.Wait()
		e.log.Debug("destination listed", "prefixes", len(prefixes), "objects", len(present))
		done <- err
	}()
	return stdsync.OnceValues(func() (map[string]int64, error) {
		if err := <-done; err != nil {
			return nil, err
		}
		return present, nil
	})
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

// failJob counts a job whose artifacts could not be listed.
func (e *engine) failJob(f JobFailure) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.sum.Failed++
	e.sum.Failures = append(e.sum.Failures, Failure{JobNumber: f.JobNumber, JobName: f.JobName, Error: "listing its artifacts: " + f.Err.Error()})
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
