//go:build unix

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
	"github.com/artifact-sync/artifact-sync/sink/sinktest"
)

// TestS3StaleHoldersManifestWriteFails: run A's manifest snapshot PUT is
// held on its way to the server (a partition) while A is paused (SIGSTOP:
// a GC pause, a stopped VM); its lease goes (deleted behind its back, as
// its expiry would let any run take it after two minutes); run B takes
// the lock, pulls another pipeline and writes its manifest. When A's PUT
// finally reaches the server it is refused (412), so B's manifest is
// intact and holds both pipelines; A, resumed, exits 1 saying it lost the
// lock and to run the same command again.
func TestS3StaleHoldersManifestWriteFails(t *testing.T) {
	w := circlecitest.NewWorld()
	p := w.AddProject(slugArg, "main")
	for range 2 {
		j := p.AddPipeline("main").AddWorkflow("build").AddJob("build", circlecitest.JobOptions{})
		for i := range 3 {
			j.AddArtifact(0, fmt.Sprintf("out/file-%d.bin", i), 4<<10)
		}
	}
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
	env := sinktest.NewS3Bucket(t)
	d := s3Dest(t, srv, env, "mirror")

	late := newDelayingProxy(t, env.Endpoint, func(r *http.Request) bool {
		return r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/mirror/.artifact-sync/manifest/manifest.json")
	})
	viaProxy := env
	viaProxy.Endpoint = late.url
	a := startTool(t, d.env, append([]string{"pull", slugArg, "--to", d.to, "--pipeline-number", "1"}, s3Args(viaProxy)...)...)
	select {
	case <-late.held:
	case <-a.done:
		t.Fatalf("run A ended before writing its manifest:\n%s", a.stderr.String())
	case <-time.After(time.Minute):
		t.Fatal("run A never wrote its manifest")
	}
	a.cmd.Process.Signal(syscall.SIGSTOP)
	defer a.cmd.Process.Signal(syscall.SIGCONT)
	lock := aws.String("mirror/.artifact-sync/lock")
	if _, err := env.Client().DeleteObject(t.Context(), &s3.DeleteObjectInput{Bucket: aws.String(env.Bucket), Key: lock}); err != nil {
		t.Fatal(err)
	}

	b := runTool(t, d.env, time.Minute, d.pull("--pipeline-number", "2")...)
	wantCode(t, b, 0)
	before := manifestJSON(t, env)
	if !strings.Contains(before, "out/file-0.bin") {
		t.Fatalf("run B wrote no manifest:\n%s", before)
	}

	code := late.release()
	a.cmd.Process.Signal(syscall.SIGCONT)
	r := a.wait(time.Minute)
	if code != http.StatusPreconditionFailed {
		t.Errorf("run A's late manifest PUT was answered %d, want 412", code)
	}
	if after := manifestJSON(t, env); after != before {
		t.Errorf("run A's late write replaced run B's manifest:\nbefore:\n%.400s\nafter:\n%.400s", before, after)
	}
	wantCode(t, r, 1)
	line := lastLine(r.stderr)
	for _, s := range []string{"lost the lock on s3://" + env.Bucket + "/mirror/.artifact-sync/lock", "run the same command again"} {
		if !strings.Contains(line, s) {
			t.Errorf("run A's last line does not say %q:\n%s", s, r.stderr)
		}
	}
	t.Logf("run A: %s", line)

	// Nothing was lost: a rerun of A finds its pipeline recorded or fetches
	// what is not, and verify finds all six artifacts intact.
	wantCode(t, runTool(t, d.env, time.Minute, d.pull("--pipeline-number", "1")...), 0)
	wantVerified(t, d, 6)
}

func manifestJSON(t *testing.T, env sinktest.S3Env) string {
	t.Helper()
	out, err := env.Client().GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(env.Bucket), Key: aws.String("mirror/.artifact-sync/manifest/manifest.json")})
	if err != nil {
		t.Fatalf("reading the manifest: %v", err)
	}
	defer out.Body.Close()
	b, _ := io.ReadAll(out.Body)
	return string(b)
}

// delayingProxy passes requests to an S3 server, except the first that
// matches: that one it keeps, whole and signed as it came, until release
// sends it on, as a network that held a packet would.
type delayingProxy struct {
	url  string
	held chan struct{} // closed when the request is held

	once     sync.Once
	release_ chan struct{}
	code     int
	done     chan struct{}
	matched  bool
	mu       sync.Mutex
}

func newDelayingProxy(t *testing.T, endpoint string, match func(*http.Request) bool) *delayingProxy {
	target, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		pr.Out.Host = pr.In.Host
	}, ErrorLog: log.New(io.Discard, "", 0)}
	p := &delayingProxy{held: make(chan struct{}), release_: make(chan struct{}), done: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		first := !p.matched && match(r)
		p.matched = p.matched || first
		p.mu.Unlock()
		if !first {
			rp.ServeHTTP(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		close(p.held)
		<-p.release_
		out, _ := http.NewRequestWithContext(context.Background(), r.Method, target.Scheme+"://"+target.Host+r.URL.RequestURI(), bytes.NewReader(body))
		out.Header = r.Header.Clone()
		out.Host = r.Host
		out.ContentLength = int64(len(body))
		resp, err := http.DefaultTransport.RoundTrip(out)
		if err != nil {
			p.code = -1
			close(p.done)
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		p.code = resp.StatusCode
		close(p.done)
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}))
	t.Cleanup(func() {
		p.once.Do(func() { close(p.release_) })
		srv.Close()
	})
	p.url = srv.URL
	return p
}

// release sends the held request on and returns the server's status.
func (p *delayingProxy) release() int {
	p.once.Do(func() { close(p.release_) })
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		return 0
	}
	return p.code
}
