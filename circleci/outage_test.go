package circleci

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
)

// outageWorld is a project with one workflow of jobs jobs, served with
// pages of two so that listing its jobs takes several requests.
func outageWorld(t *testing.T, jobs int) (*circlecitest.Server, string) {
	t.Helper()
	w := circlecitest.NewWorld()
	wf := w.AddProject("gh/acme/widgets", "main").AddPipeline("main").AddWorkflow("build")
	for i := range jobs {
		wf.AddJob(fmt.Sprintf("test-%d", i), circlecitest.JobOptions{})
	}
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken, PageSize: 2})
	return srv, wf.ID()
}

// outageClient retries quickly, for up to retryFor.
func outageClient(t *testing.T, host string, retryFor time.Duration, mod ...func(*Config)) *Client {
	t.Helper()
	cfg := Config{
		Host: host, Token: testToken,
		Retry: RetryPolicy{InitialInterval: 20 * time.Millisecond, MaxInterval: 100 * time.Millisecond, MaxElapsed: retryFor},
	}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestOutageIsRiddenOut: the API goes away (refusing, or resetting
// connections) for a while after it answered; a listing under way waits,
// says once that it is waiting and once that the API is back, and
// completes with every job.
func TestOutageIsRiddenOut(t *testing.T) {
	for _, tt := range []struct {
		kind  circlecitest.OutageKind
		cause string
	}{
		{circlecitest.OutageRefuse, `unreachable \(connection refused\)`},
		// The connection the client holds may end with a FIN before the
		// resets begin: the first failure is then "connection closed".
		{circlecitest.OutageReset, `unreachable \(connection (reset|closed)\)`},
	} {
		t.Run(tt.cause, func(t *testing.T) {
			srv, wfID := outageWorld(t, 9)
			var log syncBuffer
			c := outageClient(t, srv.URL, 20*time.Second, func(cfg *Config) { cfg.Logger = debugLogger(&log) })
			if _, err := c.Me(t.Context()); err != nil {
				t.Fatal(err)
			}
			const down = time.Second
			var jobs int
			start := time.Now()
			for _, err := range c.WorkflowJobs(t.Context(), wfID) {
				if err != nil {
					t.Fatalf("after %s: %v", time.Since(start), err)
				}
				if jobs++; jobs == 3 {
					srv.Outage(circlecitest.HostAPI, tt.kind, down)
				}
			}
			if jobs != 9 {
				t.Errorf("listed %d jobs, want 9", jobs)
			}
			if d := time.Since(start); d < down {
				t.Errorf("done after %s, within the outage of %s: was there one?", d, down)
			}
			out := log.String()
			warn := regexp.MustCompile(`level=WARN .*CircleCI API at ` + regexp.QuoteMeta(srv.URL) + ` ` + tt.cause + `; retrying for up to 20s`)
			if !warn.MatchString(out) {
				t.Errorf("no log line matching %s:\n%s", warn, out)
			}
			wantLine(t, out, "level=INFO", "CircleCI API at "+srv.URL+" answers again after")
			if n := strings.Count(out, "retrying for up to"); n != 1 {
				t.Errorf("%d lines say the client is waiting, want 1:\n%s", n, out)
			}
		})
	}
}

// wantLine fails unless one line of log holds every one of want.
func wantLine(t *testing.T, log string, want ...string) {
	t.Helper()
	for l := range strings.Lines(log) {
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(l, w)
		}
		if ok {
			return
		}
	}
	t.Errorf("no log line with %q:\n%s", want, log)
}

// TestTroubleReportedOncePerSpell: however many calls wait through an
// outage, the hook hears of it once when it begins and once when it ends.
func TestTroubleReportedOncePerSpell(t *testing.T) {
	srv, wfID := outageWorld(t, 1)
	var mu sync.Mutex
	var got []Trouble
	c := outageClient(t, srv.URL, 20*time.Second, func(cfg *Config) {
		cfg.OnTrouble = func(tr Trouble) { mu.Lock(); got = append(got, tr); mu.Unlock() }
	})
	if _, err := c.Me(t.Context()); err != nil {
		t.Fatal(err)
	}
	srv.Outage(circlecitest.HostAPI, circlecitest.OutageRefuse, 500*time.Millisecond)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := c.Workflow(t.Context(), wfID); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if len(got) != 2 || got[0].Over || !got[1].Over || !errors.Is(got[0].Err, syscall.ECONNREFUSED) ||
		got[0].Host != srv.URL || got[0].RetryFor != 20*time.Second || got[1].Lasted <= 0 {
		t.Errorf("trouble reported as %+v, want one begin (connection refused) and one end", got)
	}
}

// TestOutageGivesUp: an outage longer than the retries ends the call with
// one line saying what failed, that it gave up after how long, and what to
// do; not "check --host", since the host answered before.
func TestOutageGivesUp(t *testing.T) {
	srv, wfID := outageWorld(t, 1)
	c := outageClient(t, srv.URL, 500*time.Millisecond)
	if _, err := c.Me(t.Context()); err != nil {
		t.Fatal(err)
	}
	srv.Outage(circlecitest.HostAPI, circlecitest.OutageRefuse, 30*time.Second)
	start := time.Now()
	_, err := c.Workflow(t.Context(), wfID)
	if err == nil {
		t.Fatal("no error")
	}
	// The last try comes at the end of the span, not one backoff before.
	if d := time.Since(start); d < 500*time.Millisecond || d > 10*time.Second {
		t.Errorf("gave up after %s, want just over 500ms", d)
	}
	msg := err.Error()
	t.Log(msg)
	for _, want := range []string{"CircleCI API at " + srv.URL + ": connection refused", "gave up after retrying for", "run the same command again"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "--host") {
		t.Errorf("error %q blames --host for an outage of a host that answered", msg)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("error %q does not match its cause", msg)
	}
}

// TestHostThatNeverAnsweredFailsFast: a host that refuses from the first
// call is most likely a wrong --host: a few quick tries, then one line that
// says so, without waiting out the outage span.
func TestHostThatNeverAnsweredFailsFast(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := "http://" + ln.Addr().String()
	ln.Close()
	c := outageClient(t, host, time.Hour)
	rec := &recordingTimer{}
	c.newTimer = rec.newTimer
	_, err = c.Me(t.Context())
	want := "cannot reach the CircleCI API at " + host + ": connection refused; check --host (or $CIRCLECI_HOST) and the network"
	if err == nil || err.Error() != want {
		t.Errorf("error = %v, want %q", err, want)
	}
	if n := len(rec.Waits()); n != DefaultAttempts-1 {
		t.Errorf("%d retries, want %d", n, DefaultAttempts-1)
	}
}

// bare matches the texts of network errors that say neither which host
// failed nor what that means.
var bare = regexp.MustCompile(`(^|: )(unexpected )?EOF$|read tcp|dial tcp|connection reset by peer|\bGet "`)

// TestNetworkErrorsAreSentences: each way a connection fails, on the API
// and on a download, reaches the caller as one line naming the host and
// saying what happened, never as Go's bare texts.
func TestNetworkErrorsAreSentences(t *testing.T) {
	w := circlecitest.NewWorld()
	job := w.AddProject("gh/acme/widgets", "main").AddPipeline("main").AddWorkflow("build").AddJob("build", circlecitest.JobOptions{})
	art := job.AddArtifact(0, "dist/app.tgz", 100_000)
	slug := Slug{"gh", "acme", "widgets"}
	tests := []struct {
		name  string
		fault circlecitest.Fault
		cause string
	}{
		{"reset mid-body", circlecitest.CutFault(10), "connection reset"},
		{"closed mid-body", circlecitest.TruncateFault(10), "connection closed in the middle of a response"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
			c := outageClient(t, srv.URL, time.Minute, func(cfg *Config) { cfg.Retry.MaxAttempts = 2 })
			if _, err := c.Me(t.Context()); err != nil {
				t.Fatal(err)
			}
			srv.SetFaults(func(circlecitest.Call) circlecitest.Fault { return tt.fault })

			var apiErr error
			for _, err := range c.Artifacts(t.Context(), slug, job.Number()) {
				apiErr = err
			}
			wantSentence(t, apiErr, "CircleCI API at "+srv.URL+": "+tt.cause, "gave up after 2 attempts")

			var urls []string
			srv.SetFaults(nil)
			for a, err := range c.Artifacts(t.Context(), slug, job.Number()) {
				if err != nil {
					t.Fatal(err)
				}
				urls = append(urls, a.URL)
			}
			srv.SetFaults(circlecitest.OnArtifact(art, func(circlecitest.Call) circlecitest.Fault { return tt.fault }))
			resp, err := c.Download(t.Context(), urls[0], 0, "")
			if err != nil {
				t.Fatal(err)
			}
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			u, _ := url.Parse(urls[0])
			wantSentence(t, err, "download from "+u.Host+": "+tt.cause)
			if !IsRetryable(err) {
				t.Errorf("%v is not retryable", err)
			}
		})
	}
	t.Run("closed before an answer", func(t *testing.T) {
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
		})
		c := newClient(t, srv, func(cfg *Config) { cfg.Retry.MaxAttempts = 1 })
		_, err := c.Me(t.Context())
		wantSentence(t, err, "cannot reach the CircleCI API at "+srv.URL+prefix+": connection closed before an answer", "check --host")
		_, err = c.Download(t.Context(), srv.URL+prefix+"/api/v2/x", 0, "")
		wantSentence(t, err, "download from "+strings.TrimPrefix(srv.URL, "http://")+": connection closed before an answer")
	})
}

func wantSentence(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("no error, want %q", want)
		return
	}
	msg := err.Error()
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q lacks %q", msg, w)
		}
	}
	if bare.MatchString(msg) || strings.Contains(msg, "\n") {
		t.Errorf("error %q is not one sentence", msg)
	}
	assertNoToken(t, "error", msg)
}

// TestNetCause maps the errors Go reports for failed connections to a few
// words each.
func TestNetCause(t *testing.T) {
	op := func(o string, err error) error {
		return &net.OpError{Op: o, Net: "tcp", Err: os.NewSyscallError(o, err)}
	}
	tests := []struct {
		err  error
		want string
	}{
		{&url.Error{Op: "Get", URL: "u", Err: io.EOF}, "connection closed before an answer"},
		{fmt.Errorf("decoding: %w", io.ErrUnexpectedEOF), "connection closed in the middle of a response"},
		{&url.Error{Op: "Get", URL: "u", Err: op("read", syscall.ECONNRESET)}, "connection reset"},
		{op("dial", syscall.ECONNREFUSED), "connection refused"},
		{op("write", syscall.EPIPE), "connection closed"},
		{op("dial", syscall.EHOSTUNREACH), "no route to the host"},
		{op("dial", syscall.ETIMEDOUT), "connection timed out"},
		{&net.DNSError{Err: "no such host", Name: "circleci.invalid", IsNotFound: true}, "the name circleci.invalid does not resolve"},
		{&net.DNSError{Err: "server misbehaving", Name: "h", IsTemporary: true}, "looking up h failed (server misbehaving)"},
		{&idleError{d: time.Minute}, "idle timeout: no response within 1m0s"},
		{&idleError{d: time.Minute, body: true}, "idle timeout: no data for 1m0s in the middle of a response"},
		{&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, "its TLS certificate is not trusted (x509: certificate signed by unknown authority)"},
		{tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, "it does not speak TLS (an http:// host given as https://?)"},
		{errors.New("http2: server sent GOAWAY and closed the connection"), "the server closed the HTTP/2 connection (GOAWAY)"},
		{&url.Error{Op: "Get", URL: "u", Err: errors.New("http2: client connection force closed via ClientConn.Close")}, "HTTP/2 connection lost"},
		{errors.New("http2: client connection lost"), "HTTP/2 connection lost"},
		{errors.New("stream error: stream ID 3; INTERNAL_ERROR; received from peer"), "the server reset the HTTP/2 stream"},
		{context.Canceled, ""},
		{&url.Error{Op: "Get", URL: "u", Err: context.DeadlineExceeded}, ""},
		{errors.New("invalid character '<' looking for beginning of value"), ""},
	}
	for _, tt := range tests {
		if got := netCause(tt.err); got != tt.want {
			t.Errorf("netCause(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

// TestServerErrorIsNotAnOutage: a request the API keeps answering with 500
// (a listing CircleCI cannot produce) gets a few tries, as its own failure,
// and no "retrying" line; 503 from a gateway is an outage, ridden out for
// the whole span and reported once.
func TestServerErrorIsNotAnOutage(t *testing.T) {
	for _, tt := range []struct {
		status  int
		outage  bool
		message string
	}{
		{500, false, "gave up after 5 attempts"},
		{503, true, "gave up after retrying for"},
	} {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			var calls atomic.Int32
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				if calls.Add(1) == 1 {
					io.WriteString(w, `{"login":"me"}`)
					return
				}
				w.WriteHeader(tt.status)
			})
			var troubles atomic.Int32
			c := newClient(t, srv, func(cfg *Config) {
				cfg.Retry.MaxAttempts = 0
				cfg.Retry.MaxElapsed = 300 * time.Millisecond
				cfg.OnTrouble = func(Trouble) { troubles.Add(1) }
			})
			if _, err := c.Me(t.Context()); err != nil {
				t.Fatal(err)
			}
			_, err := c.Workflow(t.Context(), "w")
			wantSentence(t, err, strconv.Itoa(tt.status), tt.message, "run the same command again")
			tries := int(calls.Load()) - 1
			if !tt.outage && tries != DefaultAttempts || tt.outage && tries <= DefaultAttempts {
				t.Errorf("%d tries", tries)
			}
			if got := troubles.Load() == 1; got != tt.outage {
				t.Errorf("%d trouble reports, want one only for an outage", troubles.Load())
			}
		})
	}
}
