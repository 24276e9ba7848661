package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	stdsync "sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
	"github.com/artifact-sync/artifact-sync/manifest"
	"github.com/artifact-sync/artifact-sync/sink/sinktest"
)

// Environment of TestChaos.
const (
	// chaosSeedEnv sets the seed of the first trial; the others take the
	// seeds after it. Default: a seed from the clock, logged.
	chaosSeedEnv = "ARTIFACT_SYNC_CHAOS_SEED"
	// chaosTrialsEnv sets the number of trials (default chaosDefaultTrials).
	chaosTrialsEnv = "ARTIFACT_SYNC_CHAOS_TRIALS"
)

// chaosDefaultTrials is what CI runs: about half to a directory and half
// to S3, a few minutes under -race on a small machine.
const chaosDefaultTrials = 16

// chaosMaxRuns bounds the runs of one trial: the interrupted ones, one with
// the transient faults still on, and the rest without them.
const chaosMaxRuns = 6

// TestChaos drives the real binary through seeded random trials. Each seed
// picks a world (many small artifacts, a few over the multi-stream cutoff,
// jobs with parallel nodes, sometimes a job whose artifact listing always
// fails, sometimes one object storage always refuses with 403), a
// destination (a directory, or S3 on the real server: odd seeds), the
// server's latency and per-connection bandwidth, transient faults (a rate of
// 5xx answers, truncated and reset bodies, and to a directory sometimes a
// connection cut every N bytes of every download), the tool's -j, streams and cutoff, and
// one to three moments, by time or by bytes served, to send SIGINT, SIGTERM
// or SIGKILL. Then it runs the same command again, up to chaosMaxRuns runs
// (the first rerun sometimes with --force, the later ones without the
// transient faults; sometimes a recorded artifact is deleted from the
// destination after the first run, as a user might, and must come back),
// and checks the invariants below. A failure names the
// seed and a one-line command that replays it; ARTIFACT_SYNC_CHAOS_TRIALS=200
// runs more trials.
//
// The crash-safety argument checked here: at every instant, (1) a final key
// at the destination holds either nothing or the complete artifact, because
// bytes only reach a final key by an atomic rename (or a completed S3 PUT or
// multipart upload) of a file whose length and SHA-256 were checked; (2) the
// manifest records an artifact only after its final key is complete and
// durable, and its snapshot and journals are themselves written atomically,
// so it always loads and everything it records verifies; (3) whatever else
// the tool keeps (partial files, temporaries, upload state) lives under
// .artifact-sync/ and is only ever resumed from a prefix that provably
// belongs to the same version of the same artifact, so a stale, complete or
// foreign partial costs at most one refetch and never a permanent failure.
// From (1)–(3), a rerun converges: every artifact is either recorded (and
// skipped) or fetched again from a valid prefix, so once the transient faults
// stop, one run completes, with exactly the permanent failures left (exit 1,
// each listed in --json failures, each failing alone), or with none (exit
// 0). And because the manifest is written as transfers finish (at most -j
// finished transfers wait for their shared journal write) and a partial is
// kept, an interrupt costs only what was in flight: the bytes bound below.
//
// Invariants, checked after every run: no file or object outside
// .artifact-sync/ but the world's artifacts, each byte-identical (nothing
// partial at a final key); the manifest loads; a SIGINT or SIGTERM ends the
// run with 130 (or 0 or 1 if it was ending anyway), never 2. After the last
// run: it exits 0, or 1 when permanent failures were injected, with exactly
// those in --json failures (one per refused object, one per job whose listing
// failed); the destination holds every good artifact; verify passes; one
// more run transfers nothing. And to a directory, when the only transient
// fault is a cut every N bytes, the first uninterrupted run already fails
// nothing but the permanent failures: progress renews the retries.
//
// Bytes bound: for each artifact, the bytes served over all runs are at most
// its size plus, per run,
//   - for each download cut or truncated by the fault policy, what that
//     request could have served up to chaosCutSlack (a resuming tool keeps
//     what it received; to S3 the whole request, since an upload of a few
//     parts restarts);
//   - if the run ended without recording the artifact: what the run served
//     of it, except a large artifact to a directory that is not at its final
//     key, for which only chaosLargeStep of it (its streams' chunks in
//     progress plus a little buffered) may be lost, or, once, all of it
//     when the run received its last byte (a partial as long as the
//     artifact may be fetched again once);
//   - its size, in a --force run, or if the trial deleted it after the run;
//   - for a large artifact, chaosRangeSlack per answer of it not read to its
//     end (at least one per run that fetched any of it);
//   - chaosWireSlack in the run after one that ended without recording it.
//
// A tool that resumes passes; one that starts an interrupted large download
// to a directory from zero, or fetches again what it had recorded, does not.
// To S3 the bound is looser: objects of these sizes go up in one PUT or a
// few parts, which a correct tool may start over, so there it catches
// refetching what was recorded.
func TestChaos(t *testing.T) {
	trials := chaosDefaultTrials
	if s := os.Getenv(chaosTrialsEnv); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("$%s=%q: give a number of trials", chaosTrialsEnv, s)
		}
		trials = n
	}
	first := uint64(time.Now().UnixNano() % 1e6)
	if s := os.Getenv(chaosSeedEnv); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("$%s=%q: give a number", chaosSeedEnv, s)
		}
		first = n
	}
	t.Logf("seeds %d to %d (%s=%d %s=%d)", first, first+uint64(trials)-1, chaosSeedEnv, first, chaosTrialsEnv, trials)

	for i := range uint64(trials) {
		seed := first + i
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			tr := newChaosTrial(seed)
			var s3env *sinktest.S3Env
			if tr.s3 {
				e := sinktest.NewS3Bucket(t) // skips without a server, except in CI
				s3env = &e
			}
			defer func() {
				if t.Failed() {
					env := ""
					if tr.s3 {
						env = sinktest.EnvEndpoint + "=" + os.Getenv(sinktest.EnvEndpoint) + " "
					}
					t.Logf("trial: %s\nreplay: %s%s=%d %s=1 go test -run 'TestChaos/seed=%d$' .", tr, env, chaosSeedEnv, seed, chaosTrialsEnv, seed)
				}
			}()
			tr.run(t, s3env)
		})
	}
}

// chaosMoment is when and how a run is interrupted.
type chaosMoment struct {
	sig syscall.Signal
	// after, if set, is the time from the start; otherwise fraction of the
	// bytes the run has to fetch (of the artifacts not recorded yet).
	after    time.Duration
	fraction float64
}

func (m chaosMoment) String() string {
	if m.after > 0 {
		return fmt.Sprintf("%s after %s", m.sig, m.after)
	}
	return fmt.Sprintf("%s at %.0f%% of the bytes", m.sig, 100*m.fraction)
}

// chaosTrial is everything one seed decides.
type chaosTrial struct {
	seed uint64
	s3   bool

	// world
	jobs, small, large int
	smallMin, smallMax int64
	largeMax           int64
	nodes              int // most parallelism of a job
	listFail, deny     bool

	// server
	latency   time.Duration
	bandwidth int64
	redirect  bool

	// faults, transient: a rate of 5xx, truncation and resets; a cut every
	// cutEvery bytes of every download
	faultPct int
	cutEvery int64

	// h2, when set, serves every host over HTTPS with HTTP/2 and adds
	// faults of the connections themselves (see TestChaosHTTP2).
	h2 *chaosH2

	// tool
	conc    int // 0: the default
	streams int
	cutoff  int64

	moments []chaosMoment
	force   bool // the first rerun is --force
	// remove: after the first run, one recorded artifact is deleted from the
	// destination, as a user might; a plain rerun must bring it back.
	remove bool

	r *rand.Rand // what the world and the faults draw from
}

func newChaosTrial(seed uint64) *chaosTrial {
	r := rand.New(rand.NewPCG(seed, 0x636861))
	tr := &chaosTrial{seed: seed, s3: seed%2 == 1, r: r}
	pick := func(xs ...int) int { return xs[r.IntN(len(xs))] }

	tr.jobs = 1 + r.IntN(3)
	tr.nodes = pick(1, 1, 2, 4)
	// Many small files of a few hundred KiB: at any moment several
	// transfers are at their last bytes, or finished and being written.
	tr.small = 40 + r.IntN(100)
	switch r.IntN(3) {
	case 0: // tiny: hundreds of commits a second
		tr.smallMin, tr.smallMax = 4<<10, 64<<10
	case 1:
		tr.smallMin, tr.smallMax = 64<<10, 256<<10
	default:
		tr.smallMin, tr.smallMax = 128<<10, 320<<10
	}
	tr.large = pick(0, 1, 1, 2, 3)
	tr.cutoff = 2 << 20
	tr.largeMax = int64(pick(4, 6, 8)) << 20
	// Every fourth seed (a directory) keeps to transient faults and
	// interrupts, so that a range of seeds always has a few trials that
	// converge to exit 0.
	tr.listFail = r.IntN(5) == 0 && seed%4 != 0
	tr.deny = r.IntN(5) == 0 && seed%4 != 0

	tr.latency = time.Duration(pick(0, 0, 5, 10, 20)) * time.Millisecond
	tr.bandwidth = int64(pick(2, 2, 4)) << 20
	tr.redirect = tr.deny || r.IntN(2) == 0

	tr.faultPct = pick(0, 0, 5, 10)
	// A cut every 1-3 MiB, to a directory only: an S3 upload part is 8
	// MiB, more than such a connection ever carries.
	if cut := int64(1024+r.IntN(2048)) << 10; r.IntN(3) == 0 && !tr.s3 {
		tr.cutEvery = cut
	}

	tr.conc = pick(0, 8, 16, 32)
	tr.streams = pick(1, 2, 4)

	for range pick(1, 2, 3, 3) {
		m := chaosMoment{sig: []syscall.Signal{syscall.SIGINT, syscall.SIGINT, syscall.SIGINT, syscall.SIGTERM, syscall.SIGTERM, syscall.SIGKILL, syscall.SIGKILL}[r.IntN(7)]}
		// Mostly while the small files stream through, many of them at
		// their last bytes or being written out.
		if r.IntN(2) == 0 {
			m.after = time.Duration(150+r.IntN(1350)) * time.Millisecond
		} else {
			m.fraction = 0.05 + 0.7*r.Float64()
		}
		tr.moments = append(tr.moments, m)
	}
	tr.force = r.IntN(3) == 0
	tr.remove = r.IntN(4) == 0
	return tr
}

func (tr *chaosTrial) String() string {
	dst := "dir"
	if tr.s3 {
		dst = "s3"
	}
	conc := "default"
	if tr.conc > 0 {
		conc = strconv.Itoa(tr.conc)
	}
	return fmt.Sprintf("seed %d: to %s; %d jobs of up to %d nodes, %d small artifacts of %d-%d KiB, %d large up to %d MiB (cutoff %d MiB, %d streams), listing fails: %v, storage 403: %v; latency %s, %d MiB/s per connection, redirect %v; faults %d%%, cut every %d KiB; -j %s; interrupts %v; first rerun --force: %v; a recorded artifact deleted after run 1: %v",
		tr.seed, dst, tr.jobs, tr.nodes, tr.small, tr.smallMin>>10, tr.smallMax>>10, tr.large, tr.largeMax>>20, tr.cutoff>>20, tr.streams,
		tr.listFail, tr.deny, tr.latency, tr.bandwidth>>20, tr.redirect, tr.faultPct, tr.cutEvery>>10, conc, tr.moments, tr.force, tr.remove) + tr.h2.String()
}

// chaosWorld is a trial's world and what is expected of it.
type chaosWorld struct {
	w      *circlecitest.World
	good   []*circlecitest.Artifact // what must end up at the destination
	denied *circlecitest.Artifact   // refused by storage, or nil
	failed *circlecitest.Job        // whose listing fails, or nil
	bytes  int64                    // of good
}

func (tr *chaosTrial) world() *chaosWorld {
	r := tr.r
	cw := &chaosWorld{w: circlecitest.NewWorld()}
	cw.w.SetSeed(tr.seed)
	wf := cw.w.AddProject(slugArg, "main").AddPipeline("main").AddWorkflow("build")
	var jobs []*circlecitest.Job
	for i := range tr.jobs {
		jobs = append(jobs, wf.AddJob(fmt.Sprintf("test-%d", i), circlecitest.JobOptions{Parallelism: 1 + r.IntN(tr.nodes)}))
	}
	add := func(j *circlecitest.Job, path string, size int64) *circlecitest.Artifact {
		return j.AddArtifact(r.IntN(j.Parallelism()), path, size)
	}
	for i := range tr.large {
		j := jobs[r.IntN(len(jobs))]
		cw.good = append(cw.good, add(j, fmt.Sprintf("dist/big-%d.bin", i), tr.cutoff+r.Int64N(tr.largeMax-tr.cutoff+1)))
	}
	for i := range tr.small {
		j := jobs[r.IntN(len(jobs))]
		cw.good = append(cw.good, add(j, fmt.Sprintf("reports/%02d/result-%03d.xml", i%7, i), tr.smallMin+r.Int64N(tr.smallMax-tr.smallMin+1)))
	}
	if tr.deny {
		i := r.IntN(len(cw.good))
		cw.denied = cw.good[i]
		cw.good = slices.Delete(cw.good, i, i+1)
	}
	if tr.listFail {
		cw.failed = wf.AddJob("flaky-listing", circlecitest.JobOptions{})
		for i := range 5 {
			cw.failed.AddArtifact(0, fmt.Sprintf("out/%d.txt", i), 1000+int64(i))
		}
	}
	for _, a := range cw.good {
		cw.bytes += a.Size()
	}
	return cw
}

// permanent is the fault policy of the permanent failures: storage refuses
// one object with 403 (what S3 says for an expired presigned URL), and one
// job's artifacts cannot be listed (404, as for a job whose artifacts are
// gone; a 5xx would be retried for as long as API outages are ridden out).
func (tr *chaosTrial) permanent(cw *chaosWorld) []circlecitest.FaultFunc {
	var ffs []circlecitest.FaultFunc
	if cw.denied != nil {
		ffs = append(ffs, circlecitest.OnDownloads(circlecitest.OnArtifact(cw.denied, circlecitest.Always(circlecitest.StatusFault(403, "")))))
	}
	if cw.failed != nil {
		ffs = append(ffs, circlecitest.OnJobListing(cw.failed, circlecitest.Always(circlecitest.StatusFault(404, ""))))
	}
	return ffs
}

// transient is the fault policy of the faults a rerun outlives: about
// faultPct percent of requests fail (API: 503; downloads: 503, 500, a body
// truncated or reset after a few bytes), and with cutEvery every download
// is reset after that many bytes. Each decision is a hash of the seed, the
// request's key and attempt, so it does not depend on the order requests
// arrive in.
func (tr *chaosTrial) transient() circlecitest.FaultFunc {
	seed, pct, cut := tr.seed, tr.faultPct, tr.cutEvery
	return func(c circlecitest.Call) circlecitest.Fault {
		if cut > 0 && c.Download {
			return circlecitest.CutFault(cut)
		}
		if pct == 0 {
			return circlecitest.Fault{}
		}
		h := fnv.New64a()
		fmt.Fprintf(h, "%d\x00%s\x00%s\x00%d", seed, c.Host, c.Key, c.Attempt)
		x := h.Sum64()
		if int(x%100) >= pct {
			return circlecitest.Fault{}
		}
		if !c.Download {
			return circlecitest.StatusFault(503, "")
		}
		after := int64(x>>8) % (256 << 10)
		switch (x >> 32) % 4 {
		case 0:
			return circlecitest.StatusFault(503, "")
		case 1:
			return circlecitest.StatusFault(500, "")
		case 2:
			return circlecitest.TruncateFault(after)
		default:
			return circlecitest.CutFault(after)
		}
	}
}

// chaosCutSlack is what a resuming tool may lose to one cut download to a
// directory: what it had read but not yet written.
const chaosCutSlack = 1 << 20

// chaosRangeSlack is what the server may have sent of a large artifact,
// per answer the tool did not read to its end, beyond what the tool read:
// the first GET of a multi-stream download (and the first answer of a
// resume) is closed after its first chunk, and the bytes already written to
// the connection count as served.
const chaosRangeSlack = 256 << 10

// chaosWireSlack is what the server may count as served to a run after the
// run before it ended: a download handler writing into a connection the
// killed tool left is counted once its write fails, which may be after the
// counters were read and reset (settle makes this rare).
const chaosWireSlack = 64 << 10

// settle waits until the server has stopped counting bytes (handlers of a
// killed run's connections find them gone), at most 2 s.
func settle(srv *circlecitest.Server) {
	n := srv.BytesServed()
	for range 20 {
		time.Sleep(100 * time.Millisecond)
		m := srv.BytesServed()
		if m == n {
			return
		}
		n = m
	}
}

// chaosLargeStep is what a resuming tool may lose of a large artifact in
// flight to a directory when a run ends without it: the chunk in progress
// on each of its streams (1 MiB at these sizes, see sync's chunkSize) plus a
// little buffered.
func chaosLargeStep(streams int) int64 { return int64(streams)<<20 + 1<<20 }

// chaosKillWindow is how much of a large download's arrival a SIGKILL may
// lose beyond chaosLargeStep: the sink checkpoints a slow download every
// second (at least 1 MiB), a fast one every 16 MiB; with slack for a
// checkpoint's fsync on a loaded machine.
const chaosKillWindow = 1500 * time.Millisecond

// chaosAccount keeps, per artifact, the bytes served over all runs and the
// allowance the bytes bound grants.
type chaosAccount struct {
	mu      stdsync.Mutex
	served  map[*circlecitest.Artifact]int64
	allowed map[*circlecitest.Artifact]int64
	cuts    map[*circlecitest.Artifact]int  // over all runs
	refetch map[*circlecitest.Artifact]bool // granted one whole refetch
	why     map[*circlecitest.Artifact][]string
}

// policy wraps ff to grant each cut or truncated download its allowance.
func (ac *chaosAccount) policy(ff circlecitest.FaultFunc, slack int64) circlecitest.FaultFunc {
	return func(c circlecitest.Call) circlecitest.Fault {
		f := ff(c)
		if c.Download && c.Artifact != nil && (f.Kind == circlecitest.FaultCut || f.Kind == circlecitest.FaultTruncate) &&
			f.After < bodyLength(c.Request, c.Artifact.Size()) {
			ac.mu.Lock()
			ac.allowed[c.Artifact] += min(f.After, slack)
			ac.cuts[c.Artifact]++
			ac.mu.Unlock()
		}
		return f
	}
}

// bodyLength is the length of the body that answers r for an artifact of
// size bytes: the whole of it, or what its Range asks for.
func bodyLength(r *http.Request, size int64) int64 {
	spec, ok := strings.CutPrefix(r.Header.Get("Range"), "bytes=")
	if !ok {
		return size
	}
	from, to, _ := strings.Cut(spec, "-")
	first, err := strconv.ParseInt(from, 10, 64)
	if err != nil || first >= size {
		return 0
	}
	last := size - 1
	if n, err := strconv.ParseInt(to, 10, 64); err == nil && n < last {
		last = n
	}
	return last - first + 1
}

func (ac *chaosAccount) allow(a *circlecitest.Artifact, n int64, why string) {
	ac.mu.Lock()
	defer ac.mu.Unlock()
	ac.allowed[a] += n
	if n > 0 {
		ac.why[a] = append(ac.why[a], why)
	}
}

// chaosSummary is the part of pull --json the trial reads.
type chaosSummary struct {
	Artifacts, Transferred, Failed int
	Bytes                          int64
	Failures                       []struct {
		JobNumber int64  `json:"job_number"`
		NodeIndex int64  `json:"node_index"`
		Path      string `json:"path"`
		Error     string `json:"error"`
	}
}

func (tr *chaosTrial) run(t *testing.T, s3env *sinktest.S3Env) {
	t.Log(tr)
	cw := tr.world()
	srv := circlecitest.Start(t, cw.w, circlecitest.Options{Token: testToken, Latency: tr.latency, Bandwidth: tr.bandwidth, Redirect: tr.redirect, TLS: tr.h2 != nil})
	var d dest
	if tr.s3 {
		d = s3Dest(t, srv, *s3env, fmt.Sprintf("chaos-%d", tr.seed))
	} else {
		d = localDest(t, srv)
	}
	if tr.h2 != nil {
		d.env = trustFake(t, d.env, srv)
	}
	want := mirrorOf(cw.good...)
	args := []string{"--json", "--multi-thread-cutoff", strconv.FormatInt(tr.cutoff>>10, 10) + "K", "--multi-thread-streams", strconv.Itoa(tr.streams)}
	if tr.conc > 0 {
		args = append(args, "-j", strconv.Itoa(tr.conc))
	}
	slack := int64(chaosCutSlack)
	if tr.s3 {
		slack = 1 << 62
	}
	ac := &chaosAccount{served: map[*circlecitest.Artifact]int64{}, allowed: map[*circlecitest.Artifact]int64{},
		cuts: map[*circlecitest.Artifact]int{}, refetch: map[*circlecitest.Artifact]bool{}, why: map[*circlecitest.Artifact][]string{}}
	perm := tr.permanent(cw)

	var last e2eResult
	converged, wrongExit := false, false
	remaining := cw.bytes                         // of the good artifacts not recorded yet
	gone := map[*circlecitest.Artifact]bool{}     // deleted by the trial, not yet put back
	inFlight := map[*circlecitest.Artifact]bool{} // served but not recorded in the last run
	for run := 1; run <= chaosMaxRuns && !converged; run++ {
		interrupted := run <= len(tr.moments)
		policy := perm
		if run <= len(tr.moments)+1 {
			policy = append(slices.Clone(perm), tr.transient())
		}
		srv.SetFaults(ac.policy(circlecitest.FirstOf(policy...), slack))
		srv.ResetStats()
		runArgs := d.pull(args...)
		force := run == len(tr.moments)+1 && tr.force
		if force {
			runArgs = append(runArgs, "--force")
		}
		what := fmt.Sprintf("run %d", run)
		if force {
			what += " (--force)"
		}

		p := startTool(t, d.env, runArgs...)
		stopNet := tr.h2.faults(srv, run <= len(tr.moments)+1, p)
		var sent *chaosMoment
		if interrupted {
			m := tr.moments[run-1]
			reached := func() bool { return time.Since(p.start) >= m.after }
			if m.after == 0 {
				// Never before the first byte: a signal before the
				// tool has set up its handlers tests nothing.
				at := max(int64(m.fraction*float64(remaining)), 1)
				reached = func() bool { return srv.BytesServed() >= at }
			}
			if p.waitUntil(reached) {
				p.cmd.Process.Signal(m.sig)
				sent = &m
				what += fmt.Sprintf(" (%s, %s into the run, %d KiB served)", m.sig, time.Since(p.start).Round(time.Millisecond), srv.BytesServed()>>10)
			} else {
				what += fmt.Sprintf(" (ended before %s)", m)
			}
		}
		last = p.wait(3 * time.Minute)
		stopNet()
		settle(srv)
		sum, sumErr := parseChaosSummary(last.stdout)
		t.Logf("%s: exit %d in %s, %d KiB served; %s", what, last.code, last.elapsed.Round(time.Millisecond), srv.BytesServed()>>10, briefSummary(sum, sumErr))

		// Exit codes: the first wrong one is reported with its stderr,
		// the others are in the log lines above.
		var wrong string
		switch {
		case sent != nil && sent.sig == syscall.SIGKILL:
		case sent != nil:
			if last.code != 130 && last.code != 0 && last.code != 1 {
				wrong = fmt.Sprintf("%s: exit %d after %s, want 130 (interrupted)", what, last.code, sent.sig)
			}
		case last.code != 0 && last.code != 1:
			wrong = fmt.Sprintf("%s: exit %d, want 0 or 1: nothing in this world makes a run pointless", what, last.code)
		}
		if wrong != "" && !wrongExit {
			wrongExit = true
			t.Errorf("%s\nstderr:\n%s", wrong, tail(last.stderr))
		}

		// At every instant: only artifacts, whole, outside .artifact-sync/.
		d.check(t, want, false)
		recorded, err := tr.recorded(d, s3env)
		if err != nil {
			t.Errorf("after %s the manifest does not load: %v", what, err)
		}
		// An artifact the trial deleted is still recorded, but not done
		// until a run has put it back: until then a run that fetches it
		// and is interrupted may lose what it fetched, as for any other.
		for a := range gone {
			k := key(a.Job().Number(), int64(a.Node()), a.Path())
			if tr.holds(d, s3env, k, a.Size()) {
				delete(gone, a)
			} else {
				recorded[k] = false
			}
		}

		remaining = 0
		for _, a := range cw.good {
			if !recorded[key(a.Job().Number(), int64(a.Node()), a.Path())] {
				remaining += a.Size()
			}
		}

		// The bytes bound's allowance for this run.
		for _, a := range append(slices.Clone(cw.good), cw.deniedOrNil()...) {
			n := srv.Downloads(a).Bytes
			ac.served[a] += n
			k := key(a.Job().Number(), int64(a.Node()), a.Path())
			if force {
				ac.allow(a, a.Size(), fmt.Sprintf("run %d: %d (--force)", run, a.Size()))
			}
			if n == 0 {
				continue
			}
			if a.Size() >= tr.cutoff {
				// Every answer the tool did not read to its end (the first
				// GET of a multi-stream download, or the first answer of
				// each resume, closed after its first chunk) may have put
				// bytes into the connection that were never read.
				dl := srv.Downloads(a)
				early := int64(max(1, dl.Started-dl.Completed))
				ac.allow(a, early*chaosRangeSlack, fmt.Sprintf("run %d: %d × %d (answers closed early)", run, early, chaosRangeSlack))
			}
			if dl := srv.Downloads(a); tr.h2 != nil && dl.Started > 1 {
				// Connections cut or reset under it, which the fault
				// policy does not see: each answer but the last may have
				// been cut short and lose what a cut download may. (The
				// server counts an answer complete once its bytes are
				// in its HTTP/2 buffers, before a cut loses them.)
				cut := int64(dl.Started - 1)
				ac.allow(a, cut*slack, fmt.Sprintf("run %d: %d × %d (answers that may have been cut short with their connection)", run, cut, slack))
			}
			if inFlight[a] {
				ac.allow(a, chaosWireSlack, fmt.Sprintf("run %d: %d (written to the last run's connection)", run, chaosWireSlack))
			}
			inFlight[a] = !recorded[k]
			if recorded[k] {
				continue
			}
			lost := n
			if !tr.s3 && a.Size() >= tr.cutoff && !tr.atFinalKey(d, k, a.Size()) {
				step := chaosLargeStep(tr.streams)
				if sent != nil && sent.sig == syscall.SIGKILL {
					// A kill also loses what arrived since the file's
					// last checkpoint: about a second of its streams.
					step += int64(chaosKillWindow) * tr.bandwidth * int64(tr.streams) / int64(time.Second)
				}
				lost = min(n, step)
				st := srv.Downloads(a)
				if !ac.refetch[a] && st.Completed > 0 && (tr.streams == 1 || n >= a.Size()) {
					// The run received the artifact's last byte
					// but ended before placing it: a partial as
					// long as the artifact may be fetched again,
					// once.
					ac.refetch[a] = true
					lost = max(lost, a.Size())
				}
			}
			ac.allow(a, lost, fmt.Sprintf("run %d: %d of %d served, unrecorded", run, lost, n))
		}

		// With no fault but a cut every few MiB, progress renews the
		// retries: the run completes all the same, slower.
		if !interrupted && run == len(tr.moments)+1 && !tr.s3 && tr.faultPct == 0 && tr.cutEvery > 0 && sumErr == nil {
			if rep := tr.failureReport(sum, cw); rep != "" {
				t.Errorf("%s, with every download cut after %d KiB and no other fault: %s", what, tr.cutEvery>>10, rep)
			}
		}

		if !interrupted && sumErr == nil && tr.done(last, sum, cw) {
			converged = true
		}
		if tr.h2 != nil && run == len(tr.moments)+1 && !converged {
			t.Errorf("%s, over HTTP/2 with connections cut every %d KiB and %d bursts of resets: exit %d, want every artifact transferred and exit %d; %s\nstderr:\n%s",
				what, tr.h2.cutEvery>>10, tr.h2.bursts, last.code, cw.wantCode(), briefSummary(sum, sumErr), tail(last.stderr))
		}

		if run == 1 && tr.remove {
			for _, a := range cw.good {
				k := key(a.Job().Number(), int64(a.Node()), a.Path())
				if recorded[k] {
					tr.delete(t, d, s3env, k)
					gone[a] = true
					ac.allow(a, a.Size(), fmt.Sprintf("run %d: %d (deleted from the destination after it)", run, a.Size()))
					t.Logf("deleted %s from the destination after run 1", k)
					converged = false
					break
				}
			}
		}
	}

	// The last run.
	sum, err := parseChaosSummary(last.stdout)
	switch {
	case err != nil:
		t.Errorf("last run: exit %d, --json summary: %v\nstdout:\n%s\nstderr:\n%s", last.code, err, tail(last.stdout), tail(last.stderr))
	case !converged:
		t.Errorf("after %d runs the tool has not converged: last run exit %d, want %d; %s\nstderr:\n%s",
			chaosMaxRuns, last.code, cw.wantCode(), tr.failureReport(sum, cw), tail(last.stderr))
	}
	d.check(t, want, true)
	if n := verifiedCount(t, d); n >= 0 && n != len(cw.good) {
		t.Errorf("verify checked %d artifacts, want %d", n, len(cw.good))
	}
	// Bounded bytes: see the doc comment of TestChaos.
	var total, bound int64
	for _, a := range cw.good {
		total += ac.served[a]
		limit := a.Size() + ac.allowed[a]
		bound += limit
		if ac.served[a] > limit {
			t.Errorf("%s (%d bytes, %d cuts) was served %d bytes over %d runs, more than its bound %d: size + [%s]; a resuming tool fetches each byte about once",
				a.Path(), a.Size(), ac.cuts[a], ac.served[a], chaosMaxRuns, limit, strings.Join(ac.why[a], "; "))
		}
	}
	t.Logf("bytes served over all runs: %d for %d bytes of artifacts (%.2fx; bound %d)", total, cw.bytes, float64(total)/float64(max(cw.bytes, 1)), bound)
	if tr.h2 != nil && float64(total) > chaosH2Bytes*float64(cw.bytes) {
		t.Errorf("over HTTP/2, %d bytes served for %d bytes of artifacts (%.2fx): want at most %.2fx; a lost connection costs each transfer on it what it had not kept, no more",
			total, cw.bytes, float64(total)/float64(max(cw.bytes, 1)), chaosH2Bytes)
	}

	// A run after a finished one transfers nothing.
	if converged {
		srv.SetFaults(circlecitest.FirstOf(perm...))
		srv.ResetStats()
		r := startTool(t, d.env, d.pull(args...)...).wait(3 * time.Minute)
		if r.code != cw.wantCode() {
			t.Errorf("a rerun after the last: exit %d, want %d\nstderr:\n%s", r.code, cw.wantCode(), tail(r.stderr))
		}
		if n := srv.BytesServed(); n > 0 {
			t.Errorf("a rerun after the last was served %d bytes, want 0", n)
		}
	}
}

func (cw *chaosWorld) deniedOrNil() []*circlecitest.Artifact {
	if cw.denied == nil {
		return nil
	}
	return []*circlecitest.Artifact{cw.denied}
}

func (cw *chaosWorld) wantCode() int {
	if cw.denied != nil || cw.failed != nil {
		return 1
	}
	return 0
}

// done reports whether a run is the end of the trial: exit 0 with no
// permanent failure injected, or exit 1 with exactly them listed.
func (tr *chaosTrial) done(r e2eResult, sum chaosSummary, cw *chaosWorld) bool {
	return r.code == cw.wantCode() && tr.failureReport(sum, cw) == ""
}

// failureReport compares the --json failures with the injected permanent
// ones and describes any difference; "" when they match exactly.
func (tr *chaosTrial) failureReport(sum chaosSummary, cw *chaosWorld) string {
	var problems []string
	denied, job := 0, 0
	for _, f := range sum.Failures {
		switch {
		case cw.denied != nil && f.JobNumber == cw.denied.Job().Number() && f.NodeIndex == int64(cw.denied.Node()) && f.Path == cw.denied.Path():
			denied++
		case cw.failed != nil && f.JobNumber == cw.failed.Number():
			job++
		default:
			problems = append(problems, fmt.Sprintf("unexpected failure: job %d node %d %q: %s", f.JobNumber, f.NodeIndex, f.Path, f.Error))
		}
	}
	if cw.denied != nil && denied != 1 {
		problems = append(problems, fmt.Sprintf("%d failure entries for job %d node %d %q (refused by storage with 403), want 1", denied, cw.denied.Job().Number(), cw.denied.Node(), cw.denied.Path()))
	}
	if cw.failed != nil && job != 1 {
		problems = append(problems, fmt.Sprintf("%d failure entries for job %d (its artifact listing answers 404), want 1", job, cw.failed.Number()))
	}
	if len(problems) > 10 {
		problems = append(problems[:10], fmt.Sprintf("and %d more", len(problems)-10))
	}
	return strings.Join(problems, "\n")
}

func parseChaosSummary(stdout string) (chaosSummary, error) {
	var sum chaosSummary
	line := strings.TrimSpace(stdout)
	if i := strings.LastIndexByte(line, '\n'); i >= 0 {
		line = line[i+1:]
	}
	if line == "" {
		return sum, errors.New("no summary on stdout")
	}
	err := json.Unmarshal([]byte(line), &sum)
	return sum, err
}

func briefSummary(sum chaosSummary, err error) string {
	if err != nil {
		return "no summary (" + err.Error() + ")"
	}
	s := fmt.Sprintf("%d artifacts, %d transferred, %d failed", sum.Artifacts, sum.Transferred, sum.Failed)
	if len(sum.Failures) > 0 {
		f := sum.Failures[0]
		s += fmt.Sprintf("; first failure: job %d node %d %q: %s", f.JobNumber, f.NodeIndex, f.Path, f.Error)
	}
	return s
}

// tail is the end of a long output.
func tail(s string) string {
	if len(s) > 3000 {
		return "…" + s[len(s)-3000:]
	}
	return s
}

// verifiedCount runs verify and returns how many artifacts it found intact,
// or reports anything missing, changed or unexpected and returns -1.
func verifiedCount(t *testing.T, d dest) int {
	t.Helper()
	r := runTool(t, d.env, 3*time.Minute, d.verify()...)
	var n, intact int
	if _, err := fmt.Sscanf(lastLine(r.stdout), "%d artifacts checked: %d intact, 0 missing, 0 changed, 0 unexpected", &n, &intact); r.code != 0 || err != nil || n != intact {
		t.Errorf("verify: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, tail(r.stdout), tail(r.stderr))
		return -1
	}
	return intact
}

// delete removes the artifact at k from the destination.
func (tr *chaosTrial) delete(t *testing.T, d dest, s3env *sinktest.S3Env, k string) {
	t.Helper()
	if !tr.s3 {
		if err := os.Remove(filepath.Join(d.to, filepath.FromSlash(k))); err != nil {
			t.Fatal(err)
		}
		return
	}
	prefix := strings.TrimPrefix(d.to, "s3://"+s3env.Bucket+"/")
	if _, err := s3env.Client().DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: aws.String(s3env.Bucket), Key: aws.String(prefix + "/" + k)}); err != nil {
		t.Fatal(err)
	}
}

// holds reports whether the destination holds k with size bytes.
func (tr *chaosTrial) holds(d dest, s3env *sinktest.S3Env, k string, size int64) bool {
	if !tr.s3 {
		return tr.atFinalKey(d, k, size)
	}
	prefix := strings.TrimPrefix(d.to, "s3://"+s3env.Bucket+"/")
	out, err := s3env.Client().HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(s3env.Bucket), Key: aws.String(prefix + "/" + k)})
	return err == nil && aws.ToInt64(out.ContentLength) == size
}

// atFinalKey reports whether a directory destination holds k with size
// bytes (complete: checkDir proves nothing partial sits at a final key).
func (tr *chaosTrial) atFinalKey(d dest, k string, size int64) bool {
	fi, err := os.Stat(filepath.Join(d.to, filepath.FromSlash(k)))
	return err == nil && fi.Size() == size
}

// recorded loads the destination's manifest as the tool would and returns
// the keys it records.
func (tr *chaosTrial) recorded(d dest, s3env *sinktest.S3Env) (map[string]bool, error) {
	ctx := context.Background()
	dir := filepath.Join(d.to, ".artifact-sync", "manifest")
	destination := d.to
	if tr.s3 {
		// A copy of the manifest's objects, loaded from a directory.
		tmp, err := os.MkdirTemp("", "chaos-manifest-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		bucketPrefix := strings.TrimPrefix(d.to, "s3://"+s3env.Bucket+"/")
		prefix := bucketPrefix + "/.artifact-sync/manifest/"
		client := s3env.Client()
		pages := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: aws.String(s3env.Bucket), Prefix: aws.String(prefix)})
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				return nil, err
			}
			for _, o := range page.Contents {
				name := strings.TrimPrefix(aws.ToString(o.Key), prefix)
				if strings.Contains(name, "/") {
					continue
				}
				out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s3env.Bucket), Key: o.Key})
				if err != nil {
					return nil, err
				}
				f, err := os.Create(filepath.Join(tmp, name))
				if err == nil {
					_, err = f.ReadFrom(out.Body)
					f.Close()
				}
				out.Body.Close()
				if err != nil {
					return nil, err
				}
			}
		}
		dir = tmp
		destination = d.to + "/"
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return map[string]bool{}, nil
	}
	m, err := manifest.Open(ctx, manifest.DirStore{Dir: dir}, manifest.Options{Destination: destination})
	if err != nil {
		return nil, err
	}
	defer m.Close(ctx)
	keys := map[string]bool{}
	for e := range m.Entries() {
		keys[e.Key] = true
	}
	return keys, nil
}
