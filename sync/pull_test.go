package sync_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci"
	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
	"github.com/artifact-sync/artifact-sync/sink"
	ccsync "github.com/artifact-sync/artifact-sync/sync"
)

const token = "cci-sync-test-token-9f8e7d"

var slug = circleci.Slug{VCS: "gh", Org: "acme", Repo: "widgets"}

type fixture struct {
	w      *circlecitest.World
	proj   *circlecitest.Project
	srv    *circlecitest.Server
	client *circleci.Client
	arts   []*circlecitest.Artifact // every artifact a pull of pipeline 1 should write
}

// newFixture serves one pipeline with a parallel job (same path on both
// nodes), a job with more artifacts than fit on a page, an approval job and a
// running job.
func newFixture(t *testing.T, opts circlecitest.Options) *fixture {
	t.Helper()
	w := circlecitest.NewWorld()
	p := w.AddProject("gh/acme/widgets", "main")
	wf := p.AddPipeline("main").AddWorkflow("build")
	f := &fixture{w: w, proj: p}
	test := wf.AddJob("test", circlecitest.JobOptions{Parallelism: 2})
	f.arts = append(f.arts, test.AddArtifact(0, "reports/junit.xml", 3000), test.AddArtifact(1, "reports/junit.xml", 4000))
	pkg := wf.AddJob("package", circlecitest.JobOptions{})
	for i := range 12 {
		f.arts = append(f.arts, pkg.AddArtifact(0, "dist/file-"+strconv.Itoa(i)+".bin", int64(1+i*5000)))
	}
	f.arts = append(f.arts, pkg.AddArtifact(0, "empty.txt", 0))
	wf.AddApproval("hold")
	wf.AddJob("deploy", circlecitest.JobOptions{Status: "running"}).AddArtifact(0, "deploy.log", 10)
	if opts.Token == "" {
		opts.Token = token
	}
	if opts.PageSize == 0 {
		opts.PageSize = 3
	}
	f.srv = circlecitest.Start(t, w, opts)
	f.client = newClient(t, f.srv.URL)
	return f
}

func newClient(t *testing.T, host string) *circleci.Client {
	t.Helper()
	c, err := circleci.New(circleci.Config{
		Host: host, Token: token, IdleTimeout: 2 * time.Second,
		Retry: circleci.RetryPolicy{MaxAttempts: 5, InitialInterval: time.Millisecond, MaxInterval: 10 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func pullOpts() ccsync.PullOptions {
	return ccsync.PullOptions{RetryInitial: time.Millisecond, RetryMax: 20 * time.Millisecond, Run: "test-run", ToolVersion: "test"}
}

func (f *fixture) pull(t *testing.T, ctx context.Context, dest sink.Sink, sel ccsync.Selection, opts ccsync.PullOptions) (*ccsync.Summary, error) {
	t.Helper()
	return ccsync.Pull(ctx, ccsync.LimitAPI(f.client, 4), f.client, slug, &sel, dest, opts)
}

func localSink(t *testing.T) (*sink.Local, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := sink.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

func content(t *testing.T, a *circlecitest.Artifact) []byte {
	t.Helper()
	b, err := io.ReadAll(a.Content())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func defaultKey(a *circlecitest.Artifact) string {
	return strconv.FormatInt(a.Job().Number(), 10) + "/" + strconv.Itoa(a.Node()) + "/" + a.Path()
}

// checkTree asserts that dir holds exactly arts under the default layout,
// byte for byte, and nothing else outside .artifact-sync/.
func checkTree(t *testing.T, dir string, arts []*circlecitest.Artifact) {
	t.Helper()
	want := map[string]*circlecitest.Artifact{}
	for _, a := range arts {
		want[defaultKey(a)] = a
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if rel == ".artifact-sync" {
			return filepath.SkipDir
		}
		if d.IsDir() {
			return nil
		}
		a, ok := want[rel]
		if !ok {
			t.Errorf("unexpected file %s in the destination", rel)
			return nil
		}
		delete(want, rel)
		got, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if !bytes.Equal(got, content(t, a)) {
			t.Errorf("%s differs from the artifact (%d bytes, want %d)", rel, len(got), a.Size())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for k := range want {
		t.Errorf("%s is missing from the destination", k)
	}
}

func TestPullPipelineToDirectoryThenRerun(t *testing.T) {
	f := newFixture(t, circlecitest.Options{})
	dest, dir := localSink(t)
	sum, err := f.pull(t, t.Context(), dest, ccsync.Selection{PipelineNumber: 1}, pullOpts())
	if err != nil {
		t.Fatal(err)
	}
	checkTree(t, dir, f.arts)
	if sum.Artifacts != len(f.arts) || sum.Transferred != len(f.arts) || sum.Failed != 0 || sum.Skipped != 0 {
		t.Errorf("summary = %+v, want %d artifacts all transferred", sum, len(f.arts))
	}
	var total int64
	for _, a := range f.arts {
		total += a.Size()
	}
	if sum.Bytes != total {
		t.Errorf("summary counts %d bytes, want %d", sum.Bytes, total)
	}
	if len(sum.Passed) != 1 || sum.Passed[0].JobName != "deploy" {
		t.Errorf("passed over %+v, want the running deploy job", sum.Passed)
	}

	before := f.srv.DownloadTotals().Started
	sum, err = f.pull(t, t.Context(), dest, ccsync.Selection{PipelineNumber: 1}, pullOpts())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Transferred != 0 || sum.Skipped != len(f.arts) {
		t.Errorf("rerun summary = %+v, want everything skipped", sum)
	}
	if after := f.srv.DownloadTotals().Started; after != before {
		t.Errorf("rerun downloaded %d artifacts again", after-before)
	}
	checkTree(t, dir, f.arts)
}

// flaky fails about a fifth of download attempts, each with one of the ways
// real downloads fail.
func flaky(c circlecitest.Call) circlecitest.Fault {
	if !c.Download {
		return circlecitest.Fault{}
	}
	h := fnv.New32a()
	io.WriteString(h, c.Key+"#"+strconv.Itoa(c.Attempt))
	v := h.Sum32()
	if v%100 >= 20 || c.Attempt > 3 {
		return circlecitest.Fault{}
	}
	switch (v / 100) % 4 {
	case 0:
		return circlecitest.StatusFault(429, "0")
	case 1:
		return circlecitest.StatusFault(503, "")
	case 2:
		return circlecitest.CutFault(100)
	default:
		return circlecitest.TruncateFault(50)
	}
}

func TestPullRetriesFailedDownloads(t *testing.T) {
	f := newFixture(t, circlecitest.Options{})
	f.srv.SetFaults(flaky)
	dest, dir := localSink(t)
	sum, err := f.pull(t, t.Context(), dest, ccsync.Selection{PipelineNumber: 1}, pullOpts())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Failed != 0 {
		t.Fatalf("failures despite retries: %+v", sum.Failures)
	}
	checkTree(t, dir, f.arts)
	var faults int
	for _, r := range f.srv.RequestLog() {
		if r.Fault.Kind != circlecitest.NoFault {
			faults++
		}
	}
	if faults == 0 {
		t.Fatal("no fault was injected: the test proves nothing")
	}
}

func TestPullGivesUpAfterRetriesAndGoesOn(t *testing.T) {
	f := newFixture(t, circlecitest.Options{})
	bad := f.arts[3]
	f.srv.SetFaults(func(c circlecitest.Call) circlecitest.Fault {
		if c.Download && c.Artifact == bad {
			return circlecitest.StatusFault(500, "")
		}
		return circlecitest.Fault{}
	})
	dest, dir := localSink(t)
	opts := pullOpts()
	opts.Retries = 3
	sum, err := f.pull(t, t.Context(), dest, ccsync.Selection{PipelineNumber: 1}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Failed != 1 || len(sum.Failures) != 1 || sum.Failures[0].Path != bad.Path() {
		t.Fatalf("failures = %+v, want only %s", sum.Failures, bad.Path())
	}
	if got := f.srv.Downloads(bad); got.Started != 0 && got.Started > 3 {
		t.Errorf("started %d downloads of the failing artifact", got.Started)
	}
	var n int
	for _, r := range f.srv.RequestLog() {
		if r.Status == 500 {
			n++
		}
	}
	if n != 3 {
		t.Errorf("%d attempts at the failing artifact, want --retries=3", n)
	}
	good := append([]*circlecitest.Artifact{}, f.arts[:3]...)
	good = append(good, f.arts[4:]...)
	checkTree(t, dir, good)

	// The rerun fetches only what failed.
	f.srv.SetFaults(nil)
	f.srv.ResetStats()
	sum, err = f.pull(t, t.Context(), dest, ccsync.Selection{PipelineNumber: 1}, pullOpts())
	if err != nil || sum.Failed != 0 || sum.Transferred != 1 {
		t.Fatalf("rerun: %+v, %v; want the one failed artifact transferred", sum, err)
	}
	checkTree(t, dir, f.arts)
}

func TestPullRedirectCarriesNoCredential(t *testing.T) {
	f := newFixture(t, circlecitest.Options{Redirect: true})
	dest, dir := localSink(t)
	if _, err := f.pull(t, t.Context(), dest, ccsync.Selection{PipelineNumber: 1}, pullOpts()); err != nil {
		t.Fatal(err)
	}
	checkTree(t, dir, f.arts)
	if leaks := f.srv.LeakedCredentials(); len(leaks) > 0 {
		t.Errorf("the storage host received credentials: %+v", leaks)
	}
	if f.srv.Requests("storage") == 0 && f.srv.DownloadTotals().Started == 0 {
		t.Error("nothing was downloaded through the redirect")
	}
}

func TestPullRefusesHostilePaths(t *testing.T) {
	w := circlecitest.NewWorld()
	p := w.AddProject("gh/acme/widgets", "main")
	j := p.AddPipeline("main").AddWorkflow("build").AddJob("evil", circlecitest.JobOptions{})
	hostile := []string{"../../x", "/etc/x", "a/../../b", "..\\..\\x", "a\x00b", ""}
	for _, h := range hostile {
		j.AddArtifact(0, h, 10)
	}
	good := []*circlecitest.Artifact{j.AddArtifact(0, "ok/fine.txt", 100), j.AddArtifact(0, "a/../inside.txt", 5)}
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token})
	client := newClient(t, srv.URL)
	outer := t.TempDir()
	dir := filepath.Join(outer, "dest")
	dest, err := sink.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := ccsync.Pull(t.Context(), client, client, slug, &ccsync.Selection{}, dest, pullOpts())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Failed != len(hostile) || sum.Transferred != len(good) {
		t.Errorf("summary %+v, want %d refused and %d transferred", sum, len(hostile), len(good))
	}
	for _, fl := range sum.Failures {
		if !strings.Contains(fl.Error, "refused") {
			t.Errorf("failure %+v does not say it was refused", fl)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "1/0/ok/fine.txt")); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "1/0/inside.txt")); err != nil {
		t.Error(err)
	}
	entries, _ := os.ReadDir(outer)
	if len(entries) != 1 {
		t.Errorf("something was written beside the destination: %v", entries)
	}
	if _, err := os.Stat("/etc/x"); err == nil {
		t.Error("/etc/x exists")
	}
}

func TestPullBoundsConcurrentDownloads(t *testing.T) {
	w := circlecitest.NewWorld()
	p := w.AddProject("gh/acme/widgets", "main")
	j := p.AddPipeline("main").AddWorkflow("build").AddJob("many", circlecitest.JobOptions{})
	for i := range 24 {
		j.AddArtifact(0, "f"+strconv.Itoa(i), 1000)
	}
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token, Latency: 20 * time.Millisecond})
	client := newClient(t, srv.URL)
	dest, _ := localSink(t)
	opts := pullOpts()
	opts.Concurrency = 4
	sum, err := ccsync.Pull(t.Context(), client, client, slug, &ccsync.Selection{}, dest, opts)
	if err != nil || sum.Transferred != 24 {
		t.Fatalf("%+v, %v", sum, err)
	}
	peak := srv.PeakConcurrentDownloads()
	if peak > 4 {
		t.Errorf("%d downloads in flight at once with -j 4", peak)
	}
	if peak < 2 {
		t.Errorf("peak of %d downloads in flight: transfers did not run concurrently", peak)
	}
}

func TestPullResumesPartialFileWithRange(t *testing.T) {
	w := circlecitest.NewWorld()
	p := w.AddProject("gh/acme/widgets", "main")
	const size = 8 << 20
	big := p.AddPipeline("main").AddWorkflow("build").AddJob("big", circlecitest.JobOptions{}).AddArtifact(0, "big.bin", size)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token, Bandwidth: 16 << 20})
	client := newClient(t, srv.URL)
	dest, dir := localSink(t)

	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		for srv.Downloads(big).Bytes < size/2 {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
	}()
	_, err := ccsync.Pull(ctx, client, client, slug, &ccsync.Selection{}, dest, pullOpts())
	if err == nil {
		t.Fatal("the cancelled pull reported success")
	}
	if _, err := os.Stat(filepath.Join(dir, "1/0/big.bin")); err == nil {
		t.Fatal("a partial file sits at the final path")
	}
	first := srv.Downloads(big).Bytes

	sum, err := ccsync.Pull(t.Context(), client, client, slug, &ccsync.Selection{}, dest, pullOpts())
	if err != nil || sum.Transferred != 1 {
		t.Fatalf("rerun: %+v, %v", sum, err)
	}
	checkTree(t, dir, []*circlecitest.Artifact{big})
	second := srv.Downloads(big).Bytes - first
	if second >= size {
		t.Errorf("the rerun downloaded %d bytes of %d: it started over instead of resuming", second, size)
	}
	t.Logf("first run %d bytes, rerun %d bytes", first, second)
}

func TestVerifyCatchesChangedAndDeletedFiles(t *testing.T) {
	f := newFixture(t, circlecitest.Options{})
	dest, dir := localSink(t)
	if _, err := f.pull(t, t.Context(), dest, ccsync.Selection{PipelineNumber: 1}, pullOpts()); err != nil {
		t.Fatal(err)
	}
	res, err := ccsync.Verify(t.Context(), dest, ccsync.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Failed != 0 || len(res.Unexpected) != 0 || res.Artifacts != len(f.arts) {
		t.Fatalf("verify of an intact mirror: %+v", res)
	}

	changed := filepath.Join(dir, defaultKey(f.arts[2]))
	b, _ := os.ReadFile(changed)
	b[0] ^= 0xff // same size, other bytes
	os.WriteFile(changed, b, 0o644)
	os.Remove(filepath.Join(dir, defaultKey(f.arts[5])))
	os.WriteFile(filepath.Join(dir, "stray.txt"), []byte("x"), 0o644)

	res, err = ccsync.Verify(t.Context(), dest, ccsync.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Changed) != 1 || res.Changed[0] != defaultKey(f.arts[2]) {
		t.Errorf("changed = %v", res.Changed)
	}
	if len(res.Missing) != 1 || res.Missing[0] != defaultKey(f.arts[5]) {
		t.Errorf("missing = %v", res.Missing)
	}
	if len(res.Unexpected) != 1 || res.Unexpected[0] != "stray.txt" {
		t.Errorf("unexpected = %v", res.Unexpected)
	}
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// slowSink reads each body to its end, then holds the write until release
// is closed: a disk whose fsync and rename take their time.
type slowSink struct {
	*sink.Local
	release chan struct{}
	waiting atomic.Int32
}

func (s *slowSink) Put(ctx context.Context, key string, r io.Reader, opts sink.PutOptions) (sink.Info, error) {
	if strings.HasPrefix(key, ccsync.StateDir+"/") {
		return s.Local.Put(ctx, key, r, opts)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return sink.Info{}, err
	}
	s.waiting.Add(1)
	<-s.release
	return s.Local.Put(ctx, key, bytes.NewReader(data), opts)
}

// TestPullDownloadsWhileTheDiskWrites: a transfer whose body has arrived
// gives its download slot to the next one while the destination writes it
// out, so a slow disk does not idle the network; downloads still never
// exceed -j.
func TestPullDownloadsWhileTheDiskWrites(t *testing.T) {
	w := circlecitest.NewWorld()
	j := w.AddProject("gh/acme/widgets", "main").AddPipeline("main").AddWorkflow("build").AddJob("many", circlecitest.JobOptions{})
	for i := range 12 {
		j.AddArtifact(0, "f"+strconv.Itoa(i), 1000)
	}
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token})
	client := newClient(t, srv.URL)
	local, _ := localSink(t)
	dest := &slowSink{Local: local, release: make(chan struct{})}
	opts := pullOpts()
	opts.Concurrency = 2
	type result struct {
		sum *ccsync.Summary
		err error
	}
	done := make(chan result, 1)
	go func() {
		sum, err := ccsync.Pull(t.Context(), client, client, slug, &ccsync.Selection{}, dest, opts)
		done <- result{sum, err}
	}()
	// With -j 2, four bodies arrive while the first two wait for the disk.
	deadline := time.Now().Add(10 * time.Second)
	for dest.waiting.Load() < 4 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := dest.waiting.Load(); n != 4 {
		t.Errorf("%d transfers downloaded while the disk held the first ones, want 4 (2 writing, 2 more downloaded)", n)
	}
	close(dest.release)
	r := <-done
	if r.err != nil || r.sum.Transferred != 12 {
		t.Fatalf("%+v, %v", r.sum, r.err)
	}
	if peak := srv.PeakConcurrentDownloads(); peak > 2 {
		t.Errorf("%d downloads at once with -j 2", peak)
	}
}

// TestPullReusesConnections: hundreds of small downloads go over about -j
// kept-alive connections, not one connection (and, for real, one TLS
// handshake) each.
func TestPullReusesConnections(t *testing.T) {
	w := circlecitest.NewWorld()
	p := w.AddProject("gh/acme/widgets", "main").AddPipeline("main").AddWorkflow("build")
	for j := range 4 {
		job := p.AddJob("job-"+strconv.Itoa(j), circlecitest.JobOptions{})
		for i := range 50 {
			job.AddArtifact(0, "f"+strconv.Itoa(i), 512)
		}
	}
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token, Latency: 2 * time.Millisecond})
	client := newClient(t, srv.URL)
	dest, _ := localSink(t)
	opts := pullOpts()
	opts.Concurrency = 4
	sum, err := ccsync.Pull(t.Context(), client, client, slug, &ccsync.Selection{}, dest, opts)
	if err != nil || sum.Transferred != 200 {
		t.Fatalf("%+v, %v", sum, err)
	}
	if n := srv.Connections(circlecitest.HostArtifacts); n > 2*opts.Concurrency {
		t.Errorf("200 downloads with -j %d opened %d connections: they are not kept alive", opts.Concurrency, n)
	}
	if n := srv.Connections(circlecitest.HostAPI); n > 8 {
		t.Errorf("the API listings opened %d connections, more than the 8 requests allowed in flight", n)
	}
	t.Logf("%d artifact-host and %d API connections for 200 downloads", srv.Connections(circlecitest.HostArtifacts), srv.Connections(circlecitest.HostAPI))
}
