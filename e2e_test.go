package main

// End-to-end tests: the real binary, in its own process, against the fake
// CircleCI (circlecitest) and the real S3 server the S3 tests use. They prove
// what a user depends on when things go wrong: a pull killed at any instant
// resumes without losing or repeating finished work, stalls are retried, a
// full or read-only destination stops the run cleanly, bad input is one clear
// line, two runs never write one destination, and big listings stay in
// bounded memory.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
	"github.com/artifact-sync/artifact-sync/sink/sinktest"
)

// toolPath is the artifact-sync binary, built once by TestMain.
var toolPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "artifact-sync-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	toolPath = filepath.Join(dir, "artifact-sync")
	if out, err := exec.Command("go", "build", "-o", toolPath, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := sinktest.Main(m)
	crashSkipNote()
	os.RemoveAll(dir)
	os.Exit(code)
}

const slugArg = "gh/acme/widgets"

// toolEnv is the whole environment of a run: nothing leaks in from the
// developer's (no ~/.circleci/cli.yml, no AWS profile).
func toolEnv(t *testing.T, srv *circlecitest.Server) []string {
	t.Helper()
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "TMPDIR=" + os.TempDir()}
	if srv != nil {
		env = append(env, "CIRCLECI_HOST="+srv.URL, "CIRCLE_TOKEN="+testToken)
	}
	return env
}

// withS3 adds the credentials of the test S3 server.
func withS3(env []string, s sinktest.S3Env) []string {
	return append(env[:len(env):len(env)], "AWS_ACCESS_KEY_ID="+s.AccessKey, "AWS_SECRET_ACCESS_KEY="+s.SecretKey,
		"AWS_REGION="+s.Region, "AWS_EC2_METADATA_DISABLED=true")
}

func s3Args(s sinktest.S3Env) []string {
	return []string{"--s3-endpoint", s.Endpoint, "--s3-path-style"}
}

// proc is one running artifact-sync.
type proc struct {
	t              *testing.T
	args           []string
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	start          time.Time
	elapsed        time.Duration
	done           chan struct{}
	peak           atomic.Int64 // peak resident set seen, in bytes (Linux)
}

func startTool(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	return startToolWith(t, env, nil, args...)
}

// startToolWith starts the tool with stdin (nil: none).
func startToolWith(t *testing.T, env []string, stdin io.Reader, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, args: args, done: make(chan struct{})}
	p.cmd = exec.Command(toolPath, args...)
	p.cmd.Env = env
	p.cmd.Stdin = stdin
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.start = time.Now()
	go p.watchPeak()
	go func() {
		p.cmd.Wait()
		p.elapsed = time.Since(p.start)
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// watchPeak notes the process's peak resident set every 10 ms until it
// exits. Its rusage cannot tell: a child that os/exec starts (clone with
// CLONE_VM, then exec) keeps in its ru_maxrss the peak of the memory it
// shared with this test process, which the crash tests' in-memory file
// system and the race detector make large; the peak of its own memory after
// the exec (VmHWM) is its own.
func (p *proc) watchPeak() {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if n := peakRSS(p.cmd.Process.Pid); n > p.peak.Load() {
			p.peak.Store(n)
		}
		select {
		case <-p.done:
			return
		case <-tick.C:
		}
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitUntil polls cond every millisecond until it holds (true) or the
// process exits (false).
func (p *proc) waitUntil(cond func() bool) bool {
	for !p.exited() {
		if cond() {
			return true
		}
		time.Sleep(time.Millisecond)
	}
	return false
}

type e2eResult struct {
	result
	elapsed time.Duration
	maxRSS  int64 // bytes
}

// wait waits up to limit for the process to exit and checks what every run
// must honour: no token and no stack trace in its output.
func (p *proc) wait(limit time.Duration) e2eResult {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(limit):
		p.cmd.Process.Kill()
		<-p.done
		p.t.Fatalf("artifact-sync %q did not exit within %s; stderr:\n%s", p.args, limit, p.stderr.String())
	}
	r := e2eResult{
		result:  result{code: p.cmd.ProcessState.ExitCode(), stdout: p.stdout.String(), stderr: p.stderr.String()},
		elapsed: p.elapsed,
		maxRSS:  p.peak.Load(),
	}
	for name, s := range map[string]string{"stdout": r.stdout, "stderr": r.stderr} {
		if strings.Contains(s, testToken) {
			p.t.Errorf("artifact-sync %q: the token appears on %s:\n%s", p.args, name, s)
		}
		if strings.Contains(s, "goroutine ") || strings.Contains(s, "panic:") {
			p.t.Errorf("artifact-sync %q: stack trace on %s:\n%s", p.args, name, s)
		}
	}
	return r
}

func runTool(t *testing.T, env []string, limit time.Duration, args ...string) e2eResult {
	t.Helper()
	return startTool(t, env, args...).wait(limit)
}

// wantCode fails the test unless r exited with code.
func wantCode(t *testing.T, r e2eResult, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
}

// wantOneLine checks that stderr is exactly one line, "artifact-sync: …",
// holding every one of substrs, and returns it.
func wantOneLine(t *testing.T, r e2eResult, substrs ...string) string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "artifact-sync: ") {
		t.Errorf("stderr is not one line starting with \"artifact-sync: \":\n%s", r.stderr)
	}
	for _, s := range substrs {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("stderr does not say %q:\n%s", s, r.stderr)
		}
	}
	return lines[len(lines)-1]
}

// lastLine is the last line of stderr: the error, after any log lines.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// wantFile is what an artifact's copy must be.
type wantFile struct {
	art  *circlecitest.Artifact
	sha  string
	size int64
}

// mirror maps destination keys to the artifacts that belong there.
type mirror map[string]wantFile

// mirrorOf maps arts to their keys under the default layout.
func mirrorOf(arts ...*circlecitest.Artifact) mirror {
	m := make(mirror, len(arts))
	for _, a := range arts {
		m[key(a.Job().Number(), int64(a.Node()), a.Path())] = wantFile{art: a, sha: a.SHA256(), size: a.Size()}
	}
	return m
}

func sha256Hex(r io.Reader) (string, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	return hex.EncodeToString(h.Sum(nil)), n, err
}

// checkDir checks the tree under dir against want: every file outside
// .artifact-sync/ is one of want's, byte for byte (nothing half-written at a
// final key, no stray file); if complete, every one of want's is there.
func checkDir(t *testing.T, dir string, want mirror, complete bool) {
	t.Helper()
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) && !complete {
		return // a run stopped before it made DEST: nothing written is fine
	}
	seen := map[string]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		switch {
		case rel == ".artifact-sync" && d.IsDir():
			return filepath.SkipDir
		case d.IsDir():
			return nil
		case !d.Type().IsRegular():
			t.Errorf("%s in the destination is not a regular file", rel)
			return nil
		}
		w, ok := want[rel]
		if !ok {
			t.Errorf("stray file %s in the destination", rel)
			return nil
		}
		seen[rel] = true
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		sum, n, err := sha256Hex(f)
		if err != nil {
			return err
		}
		if sum != w.sha {
			t.Errorf("%s at its final path is not the artifact: %d bytes, want %d, SHA-256 %s, want %s", rel, n, w.size, sum, w.sha)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if complete {
		for k := range want {
			if !seen[k] {
				t.Errorf("%s is missing from the destination", k)
			}
		}
		// A completed run leaves no temporary file behind, its own or
		// a killed run's.
		if tmp, _ := os.ReadDir(filepath.Join(dir, ".artifact-sync", "tmp")); len(tmp) > 0 {
			t.Errorf("%d temporary files left in .artifact-sync/tmp after a completed run", len(tmp))
		}
	}
}

// checkBucket is checkDir for everything in the bucket below prefix; it also
// reports any object outside prefix.
func checkBucket(t *testing.T, env sinktest.S3Env, prefix string, want mirror, complete bool) {
	t.Helper()
	ctx := context.Background()
	client := env.Client()
	seen := map[string]bool{}
	pages := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: aws.String(env.Bucket), Prefix: aws.String(prefix + "/")})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			rel := strings.TrimPrefix(aws.ToString(o.Key), prefix+"/")
			if strings.HasPrefix(rel, ".artifact-sync/") {
				continue
			}
			w, ok := want[rel]
			if !ok {
				t.Errorf("stray object %s in the bucket", aws.ToString(o.Key))
				continue
			}
			seen[rel] = true
			out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(env.Bucket), Key: o.Key})
			if err != nil {
				t.Fatal(err)
			}
			sum, n, err := sha256Hex(out.Body)
			out.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if sum != w.sha {
				t.Errorf("%s at its final key is not the artifact: %d bytes, want %d", rel, n, w.size)
			}
		}
	}
	if complete {
		for k := range want {
			if !seen[k] {
				t.Errorf("%s is missing from the bucket", k)
			}
		}
	}
}

// dest is a destination a test pulls to: a directory or an S3 prefix.
type dest struct {
	to    string   // the --to argument
	flags []string // extra flags it needs
	env   []string
	check func(t *testing.T, want mirror, complete bool)
}

func (d dest) pull(extra ...string) []string {
	args := append([]string{"pull", slugArg, "--to", d.to}, d.flags...)
	return append(args, extra...)
}

func (d dest) verify() []string {
	return append([]string{"verify", "--to", d.to}, d.flags...)
}

func localDest(t *testing.T, srv *circlecitest.Server) dest {
	dir := filepath.Join(t.TempDir(), "mirror")
	return dest{to: dir, env: toolEnv(t, srv), check: func(t *testing.T, want mirror, complete bool) {
		t.Helper()
		checkDir(t, dir, want, complete)
	}}
}

func s3Dest(t *testing.T, srv *circlecitest.Server, env sinktest.S3Env, prefix string) dest {
	return dest{
		to: "s3://" + env.Bucket + "/" + prefix, flags: s3Args(env), env: withS3(toolEnv(t, srv), env),
		check: func(t *testing.T, want mirror, complete bool) {
			t.Helper()
			checkBucket(t, env, prefix, want, complete)
		},
	}
}

// wantVerified runs verify and expects every artifact intact and nothing
// unexpected.
// verified runs verify, wants nothing missing, changed or unexpected, and
// returns how many artifacts it found intact.
func verified(t *testing.T, d dest) int {
	t.Helper()
	r := runTool(t, d.env, time.Minute, d.verify()...)
	wantCode(t, r, 0)
	var n, intact int
	if _, err := fmt.Sscanf(lastLine(r.stdout), "%d artifacts checked: %d intact, 0 missing, 0 changed, 0 unexpected", &n, &intact); err != nil || n != intact {
		t.Fatalf("verify says\n%s\n(%v)", r.stdout, err)
	}
	return n
}

func wantVerified(t *testing.T, d dest, n int) {
	t.Helper()
	r := runTool(t, d.env, time.Minute, d.verify()...)
	wantCode(t, r, 0)
	if want := fmt.Sprintf("%d artifacts checked: %d intact, 0 missing, 0 changed, 0 unexpected", n, n); !strings.Contains(r.stdout, want) {
		t.Errorf("verify says\n%s\nwant %q", r.stdout, want)
	}
}

// killWorld is one job with many small files and a few large ones.
func killWorld() (*circlecitest.World, []*circlecitest.Artifact) {
	w := circlecitest.NewWorld()
	j := w.AddProject(slugArg, "main").AddPipeline("main").AddWorkflow("build").AddJob("build", circlecitest.JobOptions{})
	var arts []*circlecitest.Artifact
	for i := range 3 {
		arts = append(arts, j.AddArtifact(0, fmt.Sprintf("dist/big-%d.bin", i), 10<<20))
	}
	for i := range 150 {
		arts = append(arts, j.AddArtifact(0, fmt.Sprintf("logs/test-%03d.log", i), 4<<10))
	}
	return w, arts
}

// killPoint is an instant of a run, told by what the fake has served.
type killPoint struct {
	name    string
	reached func(srv *circlecitest.Server) bool
}

func startedAtLeast(n int) killPoint {
	return killPoint{fmt.Sprintf("%d downloads started", n), func(s *circlecitest.Server) bool { return s.DownloadTotals().Started >= n }}
}

func completedAtLeast(n int) killPoint {
	return killPoint{fmt.Sprintf("%d downloads completed", n), func(s *circlecitest.Server) bool { return s.DownloadTotals().Completed >= n }}
}

func servedAtLeast(n int64) killPoint {
	return killPoint{fmt.Sprintf("%d MiB served", n>>20), func(s *circlecitest.Server) bool { return s.BytesServed() >= n }}
}

// TestKillAnywhereThenResume kills pull with SIGKILL at points spread over a
// run, to a directory and to S3, and reruns it. Every time: the copy is
// byte-identical, nothing is half-written at a final key or stray outside
// .artifact-sync/, the manifest loads and verifies, and the rerun downloads
// again only what was in flight at the kill (downloading or being written
// out, at most -j of each) or waiting for its journal write (at most -j),
// however many transfers finished in the last second.
func TestKillAnywhereThenResume(t *testing.T) {
	const jobs = 4
	points := []killPoint{
		{"artifacts listed", func(s *circlecitest.Server) bool { return s.Requests("artifacts") > 0 }},
		startedAtLeast(1),
		servedAtLeast(2 << 20),
		startedAtLeast(15),
		servedAtLeast(8 << 20),
		startedAtLeast(40),
		servedAtLeast(14 << 20),
		startedAtLeast(80),
		servedAtLeast(22 << 20),
		startedAtLeast(120),
		completedAtLeast(150),
		completedAtLeast(153),
	}
	for _, target := range []string{"dir", "s3"} {
		t.Run(target, func(t *testing.T) {
			t.Parallel()
			w, arts := killWorld()
			want := mirrorOf(arts...)
			// 10 MiB at 12 MiB/s: the large files take most of a second,
			// while the small ones go through the other slot.
			srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken, Bandwidth: 12 << 20, Redirect: target == "s3"})
			var s3env sinktest.S3Env
			if target == "s3" {
				s3env = sinktest.NewS3Bucket(t)
			}
			killed := 0
			for i, kp := range points {
				d := localDest(t, srv)
				if target == "s3" {
					d = s3Dest(t, srv, s3env, fmt.Sprintf("kill-%02d", i))
				}
				srv.ResetStats()
				p := startTool(t, d.env, d.pull("-j", strconv.Itoa(jobs))...)
				hit := p.waitUntil(func() bool { return kp.reached(srv) })
				if hit {
					p.cmd.Process.Signal(syscall.SIGKILL)
					killed++
				}
				r := p.wait(time.Minute)
				atKill := srv.DownloadTotals()
				if !hit {
					wantCode(t, r, 0)
					t.Logf("kill point %q: the run finished first", kp.name)
				}
				d.check(t, want, false)

				r = runTool(t, d.env, time.Minute, d.pull("-j", strconv.Itoa(jobs))...)
				wantCode(t, r, 0)
				d.check(t, want, true)
				total := srv.DownloadTotals()
				// At the kill at most 2 × -j transfers were in flight (-j
				// reading bodies, as many more writing out what they read)
				// and at most -j finished ones waited for their shared
				// journal write (sync's committer); everything else was
				// recorded.
				if total.Started > len(arts)+3*jobs {
					t.Errorf("kill point %q: %d downloads over both runs for %d artifacts with -j %d (%d started, %d completed at the kill): the rerun fetched again what the killed run had finished",
						kp.name, total.Started, len(arts), jobs, atKill.Started, atKill.Completed)
				}
				t.Logf("kill point %q: killed after %s with %d started, %d completed; rerun %s; %d downloads in all",
					kp.name, p.elapsed.Round(time.Millisecond), atKill.Started, atKill.Completed, r.elapsed.Round(time.Millisecond), total.Started)
				wantVerified(t, d, len(arts))
				if t.Failed() {
					t.FailNow()
				}
			}
			if killed < 10 {
				t.Errorf("only %d of %d runs were killed mid-run", killed, len(points))
			}
		})
	}
}

// TestInterruptExits130AndResumes sends SIGINT or SIGTERM in the middle of a
// large transfer: the run stops with 130 and one line, the manifest holds
// what finished, and the rerun resumes the large file with Range instead of
// starting it over.
func TestInterruptExits130AndResumes(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			w := circlecitest.NewWorld()
			j := w.AddProject(slugArg, "main").AddPipeline("main").AddWorkflow("build").AddJob("build", circlecitest.JobOptions{})
			const size = 8 << 20
			big := j.AddArtifact(0, "dist/big.bin", size)
			arts := []*circlecitest.Artifact{big}
			for i := range 20 {
				arts = append(arts, j.AddArtifact(0, fmt.Sprintf("logs/%02d.log", i), 2<<10))
			}
			srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken, Bandwidth: 4 << 20})
			d := localDest(t, srv)

			p := startTool(t, d.env, d.pull("-j", "2")...)
			// Signal once the small files are at their final paths (the
			// tool records each right after), while the large one is
			// still coming.
			smallDone := func() bool {
				for _, a := range arts[1:] {
					if _, err := os.Stat(filepath.Join(d.to, key(a.Job().Number(), 0, a.Path()))); err != nil {
						return false
					}
				}
				return true
			}
			if !p.waitUntil(func() bool {
				return srv.Downloads(big).Bytes >= size/3 && srv.DownloadTotals().Completed == len(arts)-1 && smallDone()
			}) {
				t.Fatalf("the run ended before the signal:\n%s", p.stderr.String())
			}
			p.cmd.Process.Signal(sig)
			sent := time.Now()
			r := p.wait(30 * time.Second)
			wantCode(t, r, 130)
			if d := time.Since(sent); d > 5*time.Second {
				t.Errorf("took %s to stop after %s", d, sig)
			}
			line := lastLine(r.stderr)
			if !strings.HasPrefix(line, "artifact-sync: ") || !strings.Contains(line, "interrupted") || !strings.Contains(line, "again") {
				t.Errorf("last line of stderr does not say it was interrupted and how to resume:\n%s", r.stderr)
			}
			d.check(t, mirrorOf(arts...), false)
			// The manifest holds the small files that finished.
			wantVerified(t, d, len(arts)-1)

			first := srv.Downloads(big).Bytes
			r = runTool(t, d.env, time.Minute, d.pull("-j", "2")...)
			wantCode(t, r, 0)
			d.check(t, mirrorOf(arts...), true)
			again := srv.Downloads(big).Bytes - first
			if again >= size {
				t.Errorf("the rerun fetched %d bytes of the %d-byte file: it started over instead of resuming", again, size)
			}
			for _, a := range arts[1:] {
				if n := srv.Downloads(a).Started; n != 1 {
					t.Errorf("%s was downloaded %d times", a.Path(), n)
				}
			}
			wantVerified(t, d, len(arts))
			t.Logf("%s: first run %d bytes of the large file, rerun %d", sig, first, again)
		})
	}
}

// smallWorld is one job with n artifacts of size bytes.
func smallWorld(n int, size int64) (*circlecitest.World, []*circlecitest.Artifact) {
	w := circlecitest.NewWorld()
	j := w.AddProject(slugArg, "main").AddPipeline("main").AddWorkflow("build").AddJob("build", circlecitest.JobOptions{})
	var arts []*circlecitest.Artifact
	for i := range n {
		arts = append(arts, j.AddArtifact(0, fmt.Sprintf("out/file-%02d.bin", i), size))
	}
	return w, arts
}

// TestStallsAreAbandonedAndRetried: a download whose body stops coming, or
// a request never answered, is abandoned after --idle-timeout and retried;
// when it never works the run gives up in bounded time with exit 1.
func TestStallsAreAbandonedAndRetried(t *testing.T) {
	stall := circlecitest.StallFault(1000, time.Hour)
	hang := circlecitest.HangFault()
	tests := []struct {
		name   string
		faults circlecitest.FaultFunc
		args   []string
		code   int
		within time.Duration
	}{
		{"body stalls on first attempts", circlecitest.OnDownloads(circlecitest.FailFirst(1, stall)), nil, 0, 20 * time.Second},
		{"no answer on first attempts", circlecitest.FirstOf(
			circlecitest.OnHost(circlecitest.HostAPI, circlecitest.FailFirst(1, hang)),
			circlecitest.OnDownloads(circlecitest.FailFirst(1, hang))), nil, 0, 20 * time.Second},
		// Attempts in a row that keep nothing fail an artifact; one
		// that keeps bytes (16 KiB before each stall here) renews them,
		// however often it stalls, as --retries says (the default 5,
		// since on a busy machine an answer may itself miss 300 ms).
		{"body always stalls before its first byte", circlecitest.OnDownloads(func(circlecitest.Call) circlecitest.Fault { return circlecitest.StallFault(0, time.Hour) }), []string{"--retries", "2"}, 1, 20 * time.Second},
		{"body stalls after every 16 KiB", circlecitest.OnDownloads(func(circlecitest.Call) circlecitest.Fault { return circlecitest.StallFault(16<<10, time.Hour) }), nil, 0, 20 * time.Second},
		{"download never answered", circlecitest.OnDownloads(func(circlecitest.Call) circlecitest.Fault { return hang }), []string{"--retries", "2"}, 1, 20 * time.Second},
		{"API never answers", circlecitest.OnHost(circlecitest.HostAPI, func(circlecitest.Call) circlecitest.Fault { return hang }), nil, 1, 30 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w, arts := smallWorld(4, 64<<10)
			srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken, Faults: tt.faults})
			d := localDest(t, srv)
			r := runTool(t, d.env, time.Minute, d.pull(append([]string{"--idle-timeout", "300ms", "-j", "4"}, tt.args...)...)...)
			wantCode(t, r, tt.code)
			if r.elapsed > tt.within {
				t.Errorf("took %s, want under %s", r.elapsed, tt.within)
			}
			var faults int
			for _, req := range srv.RequestLog() {
				if req.Fault.Kind != circlecitest.NoFault {
					faults++
				}
			}
			if faults == 0 {
				t.Fatal("no fault was injected: the test proves nothing")
			}
			t.Logf("exit %d after %s, %d faults", r.code, r.elapsed.Round(time.Millisecond), faults)
			if tt.code == 0 {
				d.check(t, mirrorOf(arts...), true)
				return
			}
			line := lastLine(r.stderr)
			if !strings.HasPrefix(line, "artifact-sync: ") {
				t.Errorf("stderr does not end in an artifact-sync: line:\n%s", r.stderr)
			}
			if strings.Contains(tt.name, "API") {
				if !strings.Contains(line, "no response within 300ms") {
					t.Errorf("the error does not say the API did not answer:\n%s", r.stderr)
				}
				return
			}
			if !strings.Contains(line, "4 of 4 artifacts failed") || !strings.Contains(r.stdout, "idle timeout") {
				t.Errorf("the failure is not reported as idle timeouts:\nstdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
			}
			d.check(t, mirrorOf(arts...), false)
		})
	}
}

// TestUnwritableDestination: a read-only destination is refused before
// anything is fetched (exit 2), and a destination that fills up mid-file
// stops the run, also with exit 2: cli.md makes 2 the code of an unusable
// destination, and a full disk is one — the run cannot go on and a rerun
// fails the same way until someone frees space. Either way the error is one
// line naming the path, nothing partial sits at a final path and the
// manifest keeps what finished, so a rerun after the fix resumes.
//
// Permission bits do not stop root, so as root the destination is a tmpfs
// mounted read-only or too small; where mounting is not allowed the sync
// package's tests cover the same with a failing sink.
func TestUnwritableDestination(t *testing.T) {
	mounted := func(t *testing.T, opts string) string {
		t.Helper()
		dir := filepath.Join(t.TempDir(), "mnt")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := mountTmpfs(dir, opts); err != nil {
			t.Skipf("cannot mount a tmpfs here (%v); sync's TestPullStopsOnFullDestination covers this", err)
		}
		t.Cleanup(func() {
			if err := unmount(dir); err != nil {
				t.Errorf("unmounting %s: %v", dir, err)
			}
		})
		return dir
	}

	t.Run("read-only", func(t *testing.T) {
		t.Parallel()
		w, _ := smallWorld(3, 1000)
		srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
		dir := filepath.Join(t.TempDir(), "ro")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if os.Geteuid() == 0 {
			dir = mounted(t, "size=1m")
			if err := remount(dir, "ro"); err != nil {
				t.Fatal(err)
			}
		} else if err := os.Chmod(dir, 0o555); err != nil {
			t.Fatal(err)
		}
		r := runTool(t, toolEnv(t, srv), time.Minute, "pull", slugArg, "--to", dir)
		wantCode(t, r, 2)
		wantOneLine(t, r, dir)
		if n := srv.DownloadTotals().Started; n != 0 {
			t.Errorf("%d downloads to a destination that cannot be written", n)
		}
	})

	t.Run("full mid-file", func(t *testing.T) {
		t.Parallel()
		if os.Geteuid() != 0 {
			t.Skip("needs root to mount a small tmpfs; sync's TestPullStopsOnFullDestination covers this")
		}
		w := circlecitest.NewWorld()
		j := w.AddProject(slugArg, "main").AddPipeline("main").AddWorkflow("build").AddJob("build", circlecitest.JobOptions{})
		var arts []*circlecitest.Artifact
		for i := range 20 {
			arts = append(arts, j.AddArtifact(0, fmt.Sprintf("a/small-%02d.txt", i), 4<<10))
		}
		big := j.AddArtifact(0, "z/big.bin", 8<<20)
		arts = append(arts, big)
		srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
		dir := mounted(t, "size=4m")
		d := dest{to: dir, env: toolEnv(t, srv), check: func(t *testing.T, want mirror, complete bool) {
			t.Helper()
			checkDir(t, dir, want, complete)
		}}
		r := runTool(t, d.env, time.Minute, d.pull("-j", "1")...)
		wantCode(t, r, 2)
		line := wantOneLine(t, r, dir, "no space left on device")
		t.Logf("stderr: %s", line)
		if _, err := os.Stat(filepath.Join(dir, key(big.Job().Number(), 0, big.Path()))); err == nil {
			t.Error("part of the large file sits at its final path")
		}
		d.check(t, mirrorOf(arts...), false)
		// What finished is recorded and intact: the small files, but
		// perhaps the last, still being written when the run stopped.
		done := verified(t, d)
		if done < len(arts)-2 || done > len(arts)-1 {
			t.Errorf("%d artifacts recorded and intact, want the %d small ones (or all but the last)", done, len(arts)-1)
		}

		if err := remount(dir, "size=64m"); err != nil {
			t.Fatal(err)
		}
		srv.ResetStats()
		r = runTool(t, d.env, time.Minute, d.pull()...)
		wantCode(t, r, 0)
		d.check(t, mirrorOf(arts...), true)
		if got := srv.DownloadTotals().Started; got != len(arts)-done {
			t.Errorf("the rerun downloaded %d artifacts, want only the %d not recorded", got, len(arts)-done)
		}
		wantVerified(t, d, len(arts))
	})
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestBadInputIsOneClearLine runs the binary with every kind of mistake a
// user makes. Each ends in exactly one line on stderr, "artifact-sync: "
// then what is wrong and what to do, with the documented exit code, no stack
// trace and never the token. A CircleCI host that does not answer exits 1,
// not 2: it may be an outage that a later run rides out, where the other
// mistakes need the command or its configuration changed.
func TestBadInputIsOneClearLine(t *testing.T) {
	s3env := sinktest.NewS3Bucket(t)
	w := circlecitest.NewWorld()
	wf := w.AddProject(slugArg, "main").AddPipeline("main").AddWorkflow("build")
	test := wf.AddJob("test", circlecitest.JobOptions{Parallelism: 2})
	test.AddArtifact(0, "reports/junit.xml", 300)
	test.AddArtifact(1, "reports/junit.xml", 400)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})

	aFile := filepath.Join(t.TempDir(), "file")
	os.WriteFile(aFile, []byte("not a directory"), 0o644)
	corrupt := filepath.Join(t.TempDir(), "corrupt")
	os.MkdirAll(filepath.Join(corrupt, ".artifact-sync", "manifest"), 0o755)
	os.WriteFile(filepath.Join(corrupt, ".artifact-sync", "manifest", "manifest.json"), []byte(`{"entries": []}`), 0o644)
	torn := filepath.Join(t.TempDir(), "torn")
	os.MkdirAll(filepath.Join(torn, ".artifact-sync", "manifest"), 0o755)
	os.WriteFile(filepath.Join(torn, ".artifact-sync", "manifest", "manifest.json"), []byte("{\"format\": 1, garbage\x00\xff"), 0o644)
	down := "http://" + closedPort(t)

	good := toolEnv(t, srv)
	noToken := toolEnv(t, nil)
	noToken = append(noToken, "CIRCLECI_HOST="+srv.URL)
	wrongToken := append(toolEnv(t, nil), "CIRCLECI_HOST="+srv.URL, "CIRCLE_TOKEN=wrong-"+testToken)
	s3good := withS3(good, s3env)
	s3bad := append(withS3(good, s3env), "AWS_SECRET_ACCESS_KEY=wrong-secret-0123456789")
	to := func() string { return filepath.Join(t.TempDir(), "dest") }
	s3to := func(bucket string) []string {
		return append([]string{"--to", "s3://" + bucket + "/mirror"}, s3Args(s3env)...)
	}

	tests := []struct {
		name string
		env  []string
		args []string
		code int
		says []string // substrings of the line
	}{
		{"slug with two segments", good, []string{"pull", "acme/widgets", "--to", to()}, 2, []string{"acme/widgets", "gh/ORG/REPO"}},
		{"slug with four segments", good, []string{"pull", "gh/acme/widgets/x", "--to", to()}, 2, []string{"gh/ORG/REPO"}},
		{"slug with an empty segment", good, []string{"pull", "gh//widgets", "--to", to()}, 2, []string{"empty segment"}},
		{"slug of an unknown VCS", good, []string{"list", "gitlab/acme/widgets"}, 2, []string{"circleci/ORG-ID/PROJECT-ID"}},
		{"unknown flag", good, []string{"pull", slugArg, "--jobz", "1", "--to", to()}, 2, []string{"--jobz", "did you mean --job", "--help"}},
		{"job not a number", good, []string{"pull", slugArg, "--job", "abc", "--to", to()}, 2, []string{`--job "abc"`, "positive numbers"}},
		{"no token", noToken, []string{"pull", slugArg, "--to", to()}, 2, []string{"CIRCLE_TOKEN", "--token"}},
		{"wrong token", wrongToken, []string{"pull", slugArg, "--to", to()}, 2, []string{"401", "token was rejected", "--token"}},
		{"unknown project", good, []string{"pull", "gh/acme/nope", "--to", to()}, 2, []string{"gh/acme/nope", "not found"}},
		{"unknown job", good, []string{"pull", slugArg, "--job", "999", "--to", to()}, 2, []string{"999", "check the job number"}},
		{"unreachable host", good, []string{"pull", slugArg, "--host", down, "--to", to()}, 1, []string{"cannot reach", down, "--host"}},
		{"no --to", good, []string{"pull", slugArg}, 2, []string{"--to is required"}},
		{"--to is a file", good, []string{"pull", slugArg, "--to", aFile}, 2, []string{aFile, "not a directory"}},
		{"s3 URL without a bucket", s3good, append([]string{"pull", slugArg, "--to", "s3:///mirror"}, s3Args(s3env)...), 2, []string{"names no bucket", "s3://bucket/prefix"}},
		{"missing bucket", s3good, append([]string{"pull", slugArg}, s3to("no-such-bucket-"+strings.ToLower(s3env.Bucket[4:]))...), 2, []string{"does not exist", "create it"}},
		{"bad S3 credentials", s3bad, append([]string{"pull", slugArg}, s3to(s3env.Bucket)...), 2, []string{"rejected the credentials", "AWS_SECRET_ACCESS_KEY"}},
		{"unknown layout placeholder", good, []string{"pull", slugArg, "--to", to(), "--layout", "{job}/{path}"}, 2, []string{"unknown placeholder {job}", "{job_number}"}},
		{"colliding layout", good, []string{"pull", slugArg, "--to", to(), "--layout", "{path}"}, 2, []string{"both land on", "reports/junit.xml", "{node_index}"}},
		{"corrupt manifest", good, []string{"pull", slugArg, "--to", corrupt}, 2, []string{filepath.Join(corrupt, ".artifact-sync", "manifest", "manifest.json"), "move it aside"}},
		{"verify of a corrupt manifest", good, []string{"verify", "--to", corrupt}, 2, []string{"manifest.json", "move it aside"}},
		{"verify of a torn manifest", good, []string{"verify", "--to", torn}, 2, []string{filepath.Join(torn, ".artifact-sync", "manifest", "manifest.json"), "cannot be read (invalid JSON", "the next pull keeps it aside and rebuilds"}},
	}
	t.Run("each", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				r := runTool(t, tt.env, time.Minute, tt.args...)
				if r.code != tt.code {
					t.Errorf("exit %d, want %d", r.code, tt.code)
				}
				line := wantOneLine(t, r, tt.says...)
				for _, secret := range []string{"wrong-secret-0123456789", s3env.SecretKey} {
					if strings.Contains(r.stdout+r.stderr, secret) {
						t.Errorf("an S3 secret appears in the output")
					}
				}
				if r.stdout != "" {
					t.Errorf("stdout of a run that failed before it began:\n%s", r.stdout)
				}
				if r.elapsed > 10*time.Second {
					t.Errorf("took %s to fail", r.elapsed)
				}
				t.Logf("exit %d after %s: %s", r.code, r.elapsed.Round(time.Millisecond), line)
			})
		}
	})
	if n := srv.DownloadTotals().Started; n != 0 {
		t.Errorf("%d downloads by runs that should have stopped before transferring", n)
	}
}

// TestSecondRunIsRefusedWhileOneRuns: a second pull to the same directory or
// S3 prefix while one is running is refused at once with exit 2 and names
// the holder; the first run completes intact.
func TestSecondRunIsRefusedWhileOneRuns(t *testing.T) {
	for _, target := range []string{"dir", "s3"} {
		t.Run(target, func(t *testing.T) {
			t.Parallel()
			w, arts := smallWorld(4, 1<<20)
			// 1 MiB at 1 MiB/s: the first run lasts about a second.
			srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken, Bandwidth: 1 << 20})
			d := localDest(t, srv)
			if target == "s3" {
				d = s3Dest(t, srv, sinktest.NewS3Bucket(t), "mirror")
			}
			first := startTool(t, d.env, d.pull("-j", "4")...)
			if !first.waitUntil(func() bool { return srv.DownloadTotals().Started > 0 }) {
				t.Fatalf("the first run ended before downloading:\n%s", first.stderr.String())
			}
			second := runTool(t, d.env, time.Minute, d.pull("-j", "4")...)
			wantCode(t, second, 2)
			// It names DEST and the holder, and says what else can be done.
			host, _ := os.Hostname()
			says := []string{"artifact-sync: " + d.to + " is being written by another artifact-sync (pid " + strconv.Itoa(first.cmd.Process.Pid) + ", host " + host + ", since ",
				"wait for it to finish"}
			if target == "s3" {
				says = append(says, ", lease until ", "if it was stopped without releasing the lock, run again after ")
			} else {
				says = append(says, "or stop it: its lock goes with its process")
			}
			wantOneLine(t, second, says...)
			if first.exited() {
				t.Error("the first run was over before the second was refused: the test proves nothing")
			}
			r := first.wait(time.Minute)
			wantCode(t, r, 0)
			d.check(t, mirrorOf(arts...), true)
			if n := srv.DownloadTotals().Started; n != len(arts) {
				t.Errorf("%d downloads for %d artifacts: the refused run fetched some", n, len(arts))
			}
			wantVerified(t, d, len(arts))
		})
	}
}

// TestBigListings pulls a job with 20,000 artifacts listed in one page, and a
// workflow of 200 jobs, and reports the peak memory of the process: both
// stay well within bounds, and API requests never exceed the tool's limit of
// 8 in flight however many jobs there are.
func TestBigListings(t *testing.T) {
	t.Run("20000 artifacts in one job", func(t *testing.T) {
		t.Parallel()
		w, arts := smallWorld(0, 0)
		job := w.Project(slugArg).Pipelines()[0].Workflows()[0].Jobs()[0]
		for i := range 20000 {
			arts = append(arts, job.AddArtifact(0, fmt.Sprintf("reports/%02d/test-%05d.xml", i%100, i), 64))
		}
		srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
		d := localDest(t, srv)
		r := runTool(t, d.env, 3*time.Minute, d.pull()...)
		wantCode(t, r, 0)
		if !strings.Contains(r.stdout, "20000 artifacts: 20000 transferred") {
			t.Errorf("summary: %s", r.stdout)
		}
		d.check(t, mirrorOf(arts...), true)
		t.Logf("20,000 artifacts: %s, peak RSS %.1f MiB", r.elapsed.Round(time.Millisecond), float64(r.maxRSS)/(1<<20))
		if r.maxRSS > 300<<20 {
			t.Errorf("peak RSS %d MiB, want under 300 MiB", r.maxRSS>>20)
		}
		if peak := srv.PeakConcurrentAPI(); peak > 8 {
			t.Errorf("%d API requests in flight at once, over the limit of 8", peak)
		}
	})
	t.Run("200 jobs in one workflow", func(t *testing.T) {
		t.Parallel()
		w := circlecitest.NewWorld()
		wf := w.AddProject(slugArg, "main").AddPipeline("main").AddWorkflow("build")
		var arts []*circlecitest.Artifact
		for i := range 200 {
			j := wf.AddJob(fmt.Sprintf("shard-%03d", i), circlecitest.JobOptions{})
			for k := range 5 {
				arts = append(arts, j.AddArtifact(0, fmt.Sprintf("out/%d.txt", k), 64))
			}
		}
		// Latency makes requests overlap, so a missing limit would show.
		srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken, Latency: 5 * time.Millisecond})
		d := localDest(t, srv)
		r := runTool(t, d.env, 3*time.Minute, d.pull("--workflow", wf.ID(), "-j", "16")...)
		wantCode(t, r, 0)
		d.check(t, mirrorOf(arts...), true)
		peak := srv.PeakConcurrentAPI()
		t.Logf("200 jobs, 1000 artifacts: %s, peak RSS %.1f MiB, %d API requests (%d at most at once)",
			r.elapsed.Round(time.Millisecond), float64(r.maxRSS)/(1<<20), srv.Requests("artifacts")+srv.Requests("jobs"), peak)
		if peak > 8 {
			t.Errorf("%d API requests in flight at once, over the limit of 8", peak)
		}
		if peak < 2 {
			t.Errorf("at most %d API request in flight: the 200 listings were not concurrent", peak)
		}
		if r.maxRSS > 300<<20 {
			t.Errorf("peak RSS %d MiB, want under 300 MiB", r.maxRSS>>20)
		}
	})
}

// TestHostileArtifactPaths: artifact paths that would leave the destination
// or land in the tool's own folder are refused and reported, exit 1, while
// every other artifact is written; nothing appears outside the destination.
func TestHostileArtifactPaths(t *testing.T) {
	w := circlecitest.NewWorld()
	j := w.AddProject(slugArg, "main").AddPipeline("main").AddWorkflow("build").AddJob("evil", circlecitest.JobOptions{})
	hostile := []string{"../../escape.txt", "/tmp/artifact-sync-absolute.txt", "a/../../up.txt", `..\..\win.txt`, "nul\x00byte",
		".artifact-sync/manifest/manifest.json", ".ARTIFACT-SYNC/lock", ".artifact-sync./tmp/x"}
	for _, p := range hostile {
		j.AddArtifact(0, p, 10)
	}
	good := []*circlecitest.Artifact{j.AddArtifact(0, "ok/fine.txt", 100), j.AddArtifact(0, "a/../inside.txt", 5)}
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
	outer := t.TempDir()
	dir := filepath.Join(outer, "dest")
	r := runTool(t, toolEnv(t, srv), time.Minute, "pull", slugArg, "--to", dir, "--layout", "{path}")
	wantCode(t, r, 1)
	if line := lastLine(r.stderr); !strings.Contains(line, fmt.Sprintf("%d of %d artifacts failed", len(hostile), len(hostile)+len(good))) {
		t.Errorf("last line of stderr: %s", line)
	}
	// Refusals of one cause share a line; each names its artifact.
	for _, p := range hostile {
		if !strings.Contains(r.stdout, fmt.Sprintf("%q", p)) {
			t.Errorf("the refusal of %q is not reported:\n%s", p, r.stdout)
		}
	}
	if n := strings.Count(r.stdout, "refused"); n != 5 {
		t.Errorf("%d lines of refusals, want one per cause (5):\n%s", n, r.stdout)
	}
	checkDir(t, dir, mirror{"ok/fine.txt": {sha: good[0].SHA256()}, "inside.txt": {sha: good[1].SHA256()}}, true)
	if entries, _ := os.ReadDir(outer); len(entries) != 1 {
		t.Errorf("something was written beside the destination: %v", entries)
	}
	if _, err := os.Stat("/tmp/artifact-sync-absolute.txt"); err == nil {
		t.Error("an absolute artifact path was written")
	}
	wantVerified(t, dest{to: dir, env: toolEnv(t, srv)}, len(good))
}
