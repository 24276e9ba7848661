package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
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
// was transferred, already done, failed and not started, and the command
// that resumes the run (without the token given on the command line).
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
	m := regexp.MustCompile(`(\d+) artifacts: (\d+) transferred \(.*\), (\d+) already done, (\d+) failed, (\d+) not started`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("the summary does not say what is left:\n%s", r.stdout)
	}
	n, transferred, done, failed, notStarted := atoi(m[1]), atoi(m[2]), atoi(m[3]), atoi(m[4]), atoi(m[5])
	if n != len(arts) || transferred < 4 || done != 0 || failed != 0 || notStarted < 1 || transferred+notStarted != n {
		t.Errorf("summary: %d artifacts, %d transferred, %d already done, %d failed, %d not started:\n%s", n, transferred, done, failed, notStarted, r.stdout)
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
