package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
	"github.com/artifact-sync/artifact-sync/sink/sinktest"
)

// TestInterruptSummarySaysWhatIsLeft: after Ctrl-C the summary says what
// was transferred, already done, failed, in flight and not started, and
// the command that resumes the run (without the token given on the
// command line).
func TestInterruptSummarySaysWhatIsLeft(t *testing.T) {
	w, arts := smallWorld(30, 64<<10)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken, Bandwidth: 256 << 10})
	d := localDest(t, srv)
	wantCode(t, runTool(t, d.env, time.Minute, d.pull("-q", "--include", "out/file-0[0-4].bin")...), 0)

	p := startTool(t, d.env, "pull", slugArg, "--to", d.to, "-j", "1", "--token", testToken, "--layout", "{job_number}/{path}")
	if !p.waitUntil(func() bool { return srv.DownloadTotals().Completed >= 5+4 }) {
		t.Fatalf("the run ended before the signal:\n%s", p.stderr.String())
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	r := p.wait(30 * time.Second)
	wantCode(t, r, 130)
	m := regexp.MustCompile(`(\d+) artifacts: (\d+) transferred \(.*\), (\d+) already done, (\d+) failed(?:, in flight: (\d+) \(.* kept for resume\))?, (\d+) not started`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("the summary does not say what is left:\n%s", r.stdout)
	}
	n, transferred, done, failed, inFlight, notStarted := atoi(m[1]), atoi(m[2]), atoi(m[3]), atoi(m[4]), atoi(m[5]), atoi(m[6])
	if n != len(arts) || transferred < 4 || done != 0 || failed != 0 || notStarted < 1 || transferred+inFlight+notStarted != n {
		t.Errorf("summary: %d artifacts, %d transferred, %d already done, %d failed, %d in flight, %d not started:\n%s", n, transferred, done, failed, inFlight, notStarted, r.stdout)
	}
	want := fmt.Sprintf("to resume: artifact-sync pull %s --to %s -j 1 --layout '{job_number}/{path}'", slugArg, d.to)
	if !strings.Contains(r.stdout, want) {
		t.Errorf("the summary does not give the command to resume:\n%s\nwant %q", r.stdout, want)
	}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// TestSecondInterruptExitsAtOnce: a second Ctrl-C while the first waits for
// the destination (here an S3 server that stopped answering) exits at once;
// the manifest stays consistent, and the next run completes the mirror.
func TestSecondInterruptExitsAtOnce(t *testing.T) {
	s3env := sinktest.NewS3Bucket(t)
	target, err := url.Parse(s3env.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	// While hang is set the proxy answers nothing until released (a
	// request whose body was not read is not cancelled by its client
	// going away, so the handler cannot wait for that alone).
	var hang atomic.Bool
	release := make(chan struct{})
	rp := httputil.NewSingleHostReverseProxy(target)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hang.Load() {
			select {
			case <-r.Context().Done():
			case <-release:
			}
			http.Error(w, "released", http.StatusServiceUnavailable)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	var once sync.Once
	unhang := func() { once.Do(func() { hang.Store(false); close(release) }) }
	t.Cleanup(func() { unhang(); proxy.CloseClientConnections(); proxy.Close() })
	viaProxy := s3env
	viaProxy.Endpoint = proxy.URL

	w, arts := smallWorld(40, 32<<10)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken, Bandwidth: 128 << 10})
	d := s3Dest(t, srv, viaProxy, "mirror")
	p := startTool(t, d.env, d.pull("-j", "2")...)
	if !p.waitUntil(func() bool { return srv.DownloadTotals().Completed >= 6 }) {
		t.Fatalf("the run ended before the signal:\n%s", p.stderr.String())
	}
	hang.Store(true)
	p.cmd.Process.Signal(syscall.SIGINT)
	time.Sleep(500 * time.Millisecond)
	if p.exited() {
		t.Fatalf("the run did not wait for the destination after the first signal; stderr:\n%s", p.stderr.String())
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	sent := time.Now()
	r := p.wait(60 * time.Second)
	wantCode(t, r, 130)
	if d := time.Since(sent); d > 3*time.Second {
		t.Errorf("took %s to exit after the second signal", d)
	}
	if line := lastLine(r.stderr); !strings.Contains(line, "interrupted again") || !strings.Contains(line, "resume") {
		t.Errorf("last line of stderr: %q", line)
	}

	unhang()
	r = runTool(t, d.env, 2*time.Minute, d.pull("-q")...)
	wantCode(t, r, 0)
	d.check(t, mirrorOf(arts...), true)
	wantVerified(t, d, len(arts))
}

// TestTimeoutSignalsAreOneInterrupt: GNU timeout, the usual bound of a
// nightly job, signals the tool and then its process group, so two signals
// arrive microseconds apart. They count as one interrupt: the run stops in
// order (exit 130, the --json summary on stdout), keeps what it wrote, and
// the rerun fetches only the rest.
func TestTimeoutSignalsAreOneInterrupt(t *testing.T) {
	timeout, err := exec.LookPath("timeout")
	if err != nil {
		t.Skip("needs GNU timeout (coreutils)")
	}
	const size = 48 << 20
	for _, sig := range []string{"INT", "TERM", "INT+TERM"} {
		t.Run(sig, func(t *testing.T) {
			w := circlecitest.NewWorld()
			j := w.AddProject(slugArg, "main").AddPipeline("main").AddWorkflow("build").AddJob("build", circlecitest.JobOptions{})
			arts := []*circlecitest.Artifact{j.AddArtifact(0, "dist/large.bin", size), j.AddArtifact(0, "dist/small.txt", 4<<10)}
			srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken, Bandwidth: 2 << 20})
			d := localDest(t, srv)
			args := d.pull("--json", "--multi-thread-cutoff", "16M")
			cmd := exec.Command(timeout, append([]string{"--preserve-status", "-s", sig, "1.5", toolPath}, args...)...)
			if sig == "INT+TERM" {
				cmd = exec.Command(toolPath, args...)
			}
			cmd.Env = d.env
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if sig == "INT+TERM" {
				// Two signals of one sender that the kernel cannot merge
				// into one, as it may merge timeout's two SIGINTs.
				go func(p *os.Process) {
					time.Sleep(1500 * time.Millisecond)
					p.Signal(syscall.SIGINT)
					p.Signal(syscall.SIGTERM)
				}(cmd.Process)
			}
			cmd.Wait()
			if code := cmd.ProcessState.ExitCode(); code != 130 {
				t.Fatalf("under timeout -s %s: exit %d, want 130\nstdout:\n%s\nstderr:\n%s", sig, code, stdout.String(), stderr.String())
			}
			if strings.Contains(stderr.String(), "interrupted again") {
				t.Errorf("one timeout took the hard exit:\n%s", stderr.String())
			}
			var sum struct {
				Artifacts *int `json:"artifacts"`
			}
			if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil || sum.Artifacts == nil {
				t.Fatalf("no JSON summary on stdout (%v):\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
			}
			first := srv.BytesServed()
			if first >= size {
				t.Fatalf("the first run was served %d bytes, the whole artifact: it ended before the signal", first)
			}
			r := runTool(t, d.env, time.Minute, args...)
			wantCode(t, r, 0)
			d.check(t, mirrorOf(arts...), true)
			served := srv.BytesServed()
			t.Logf("timeout -s %s at %d MiB of %d MiB: both runs served %.4fx", sig, first>>20, size>>20, float64(served)/float64(size+4<<10))
			// What was in flight in socket buffers at the signal is served
			// again; a hard exit would lose up to a checkpoint (1 s or
			// 16 MiB) of each stream.
			if total := int64(size + 4<<10); served > total+total/100 {
				t.Errorf("both runs served %d bytes for %d of artifacts (%.3fx): the rerun fetched again what the interrupted run wrote", served, total, float64(served)/float64(total))
			}
		})
	}
}
