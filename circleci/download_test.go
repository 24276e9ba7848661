package circleci

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// headerLog records the credential headers each request to a server carried.
type headerLog struct {
	mu   sync.Mutex
	seen []http.Header
}

func (l *headerLog) add(r *http.Request) {
	h := http.Header{}
	for _, k := range sensitiveHeaders {
		if v := r.Header.Values(k); len(v) > 0 {
			h[k] = v
		}
	}
	h.Set("X-Path", r.URL.Path)
	l.mu.Lock()
	l.seen = append(l.seen, h)
	l.mu.Unlock()
}

func (l *headerLog) all() []http.Header {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]http.Header(nil), l.seen...)
}

func newAPIClient(t *testing.T, mod ...func(*Config)) *Client {
	t.Helper()
	api := newServer(t, func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
	return newClient(t, api, mod...)
}

func TestDownloadRange(t *testing.T) {
	type seen struct{ rng, ifRange, token, accept, acceptEncoding, ua string }
	got := make(chan seen, 1)
	art := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.Header.Get("Range"), r.Header.Get("If-Range"), r.Header.Get("Circle-Token"),
			r.Header.Get("Accept"), r.Header.Get("Accept-Encoding"), r.Header.Get("User-Agent")}
		http.ServeContent(w, r, "f.txt", time.Unix(0, 0), strings.NewReader("0123456789"))
	}))
	t.Cleanup(art.Close)
	c := newAPIClient(t)
	tests := []struct {
		name    string
		offset  int64
		ifRange string
		want    seen
		status  int
		body    string
	}{
		{"whole", 0, "", seen{token: testToken, acceptEncoding: "identity", ua: "artifact-sync"}, 200, "0123456789"},
		{"ifRange ignored without offset", 0, `"etag"`, seen{token: testToken, acceptEncoding: "identity", ua: "artifact-sync"}, 200, "0123456789"},
		{"from offset", 4, "", seen{rng: "bytes=4-", token: testToken, acceptEncoding: "identity", ua: "artifact-sync"}, 206, "456789"},
		{"with If-Range", 4, `"v1"`, seen{rng: "bytes=4-", ifRange: `"v1"`, token: testToken, acceptEncoding: "identity", ua: "artifact-sync"}, 200, "0123456789"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := c.Download(t.Context(), art.URL+"/output/job/u/artifacts/0/f.txt", tt.offset, tt.ifRange)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if s := <-got; s != tt.want {
				t.Errorf("server saw %+v, want %+v", s, tt.want)
			}
			if resp.StatusCode != tt.status || string(body) != tt.body {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, body, tt.status, tt.body)
			}
		})
	}
	if _, err := c.Download(t.Context(), art.URL, -1, ""); err == nil {
		t.Error("negative offset: no error")
	}
	if _, err := c.Download(t.Context(), "/relative/path", 0, ""); err == nil {
		t.Error("relative URL: no error")
	}
}

func TestDownloadErrorStatus(t *testing.T) {
	art := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "3")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"message":"Slow down"}`)
	}))
	t.Cleanup(art.Close)
	c := newAPIClient(t)
	resp, err := c.Download(t.Context(), art.URL+"/a/b.bin?X-Amz-Signature=secret", 0, "")
	if err == nil {
		resp.Body.Close()
		t.Fatal("no error")
	}
	var e *Error
	if !errors.As(err, &e) || e.StatusCode != 503 || e.Message != "Slow down" || e.Path != "/a/b.bin" || e.RetryAfter != 3*time.Second {
		t.Errorf("error = %#v", err)
	}
	if !IsRetryable(err) || RetryAfter(err) != 3*time.Second {
		t.Errorf("IsRetryable = %v, RetryAfter = %s", IsRetryable(err), RetryAfter(err))
	}
	if strings.Contains(err.Error(), "Signature") {
		t.Errorf("error holds the query: %v", err)
	}
}

// TestDownloadRedirects: the token goes to the artifact URL's own origin
// and never to another one, not even back to the first after leaving it.
func TestDownloadRedirects(t *testing.T) {
	var logA, logB headerLog
	var b *httptest.Server
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		logA.add(r)
		switch r.URL.Path {
		case "/same":
			http.Redirect(w, r, "/final", http.StatusFound)
		case "/other":
			http.Redirect(w, r, b.URL+"/signed?X-Amz-Signature=x", http.StatusFound)
		case "/bounce":
			http.Redirect(w, r, b.URL+"/back", http.StatusFound)
		default:
			io.WriteString(w, "a")
		}
	}))
	t.Cleanup(a.Close)
	b = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		logB.add(r)
		if r.URL.Path == "/back" {
			http.Redirect(w, r, a.URL+"/final", http.StatusFound)
			return
		}
		io.WriteString(w, "b")
	}))
	t.Cleanup(b.Close)
	// Both servers are on 127.0.0.1: only the port tells them apart, which
	// net/http alone would treat as the same host.
	c := newAPIClient(t)
	download := func(path string) {
		t.Helper()
		resp, err := c.Download(t.Context(), a.URL+path, 5, `"etag"`)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	download("/same")
	if len(logA.all()) != 2 {
		t.Fatalf("hops to a: %v", logA.all())
	}
	for i, h := range logA.all() {
		if h.Get("Circle-Token") != testToken {
			t.Errorf("same-origin hop %d (%s) lacked the token", i, h.Get("X-Path"))
		}
	}

	logA = headerLog{}
	download("/other")
	if h := logA.all(); len(h) != 1 || h[0].Get("Circle-Token") != testToken {
		t.Errorf("first hop: %v", h)
	}
	for _, h := range logB.all() {
		if len(h) > 1 {
			t.Errorf("cross-origin hop to %s carried credentials: %v", h.Get("X-Path"), h)
		}
	}

	logA, logB = headerLog{}, headerLog{}
	download("/bounce")
	hopsA := logA.all()
	if len(hopsA) != 2 || hopsA[0].Get("Circle-Token") != testToken {
		t.Fatalf("hops to a: %v", hopsA)
	}
	if len(hopsA[1]) > 1 {
		t.Errorf("returning to the first origin after leaving it re-sent credentials: %v", hopsA[1])
	}
	for _, h := range logB.all() {
		if len(h) > 1 {
			t.Errorf("cross-origin hop carried credentials: %v", h)
		}
	}
}

// TestRedirectStripsCallerHeaders checks the redirect policy on its own:
// headers net/http copies to the next hop lose every credential once the
// chain leaves the first origin.
func TestRedirectStripsCallerHeaders(t *testing.T) {
	mk := func(u string) *http.Request {
		r, _ := http.NewRequest("GET", u, nil)
		for _, h := range sensitiveHeaders {
			r.Header.Set(h, "x")
		}
		return r
	}
	check := checkRedirect(nil)
	tests := []struct {
		name  string
		via   []string
		next  string
		strip bool
	}{
		{"same origin", []string{"https://a.example/x"}, "https://a.example/y", false},
		{"default port spelled out", []string{"https://a.example/x"}, "https://a.example:443/y", false},
		{"other port", []string{"http://127.0.0.1:8080/x"}, "http://127.0.0.1:8081/y", true},
		{"other scheme", []string{"https://a.example/x"}, "http://a.example/y", true},
		{"subdomain", []string{"https://a.example/x"}, "https://s3.a.example/y", true},
		{"localhost vs 127.0.0.1", []string{"http://127.0.0.1:80/x"}, "http://localhost:80/y", true},
		{"back after leaving", []string{"https://a.example/x", "https://b.example/y"}, "https://a.example/z", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var via []*http.Request
			for _, u := range tt.via {
				via = append(via, mk(u))
			}
			req := mk(tt.next)
			if err := check(req, via); err != nil {
				t.Fatal(err)
			}
			for _, h := range sensitiveHeaders {
				if stripped := req.Header.Get(h) == ""; stripped != tt.strip {
					t.Errorf("%s stripped = %v, want %v", h, stripped, tt.strip)
				}
			}
		})
	}
}

// TestTokenOnlyToAPIOrigin: API calls carry the token; a redirect from the
// API to another origin does not.
func TestTokenOnlyToAPIOrigin(t *testing.T) {
	var other headerLog
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		other.add(r)
		io.WriteString(w, `{"login":"x"}`)
	}))
	t.Cleanup(elsewhere.Close)
	var api headerLog
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		api.add(r)
		if r.Header.Get("Accept") != "application/json" || r.Header.Get("User-Agent") != "artifact-sync-test" {
			t.Errorf("headers = %v", r.Header)
		}
		http.Redirect(w, r, elsewhere.URL+"/me", http.StatusFound)
	})
	c := newClient(t, srv, func(cfg *Config) { cfg.UserAgent = "artifact-sync-test" })
	if _, err := c.Me(t.Context()); err != nil {
		t.Fatal(err)
	}
	if h := api.all(); len(h) != 1 || h[0].Get("Circle-Token") != testToken {
		t.Errorf("API saw %v", h)
	}
	if h := other.all(); len(h) != 1 || len(h[0]) > 1 {
		t.Errorf("other origin saw %v", h)
	}
}

// roundTripFunc lets a test see whether a request reached the network.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestPlainHTTPRefused(t *testing.T) {
	for _, host := range []string{"http://example.invalid", "http://10.0.0.1:8080/prefix", "http://circleci.com"} {
		if _, err := New(Config{Host: host, Token: testToken}); !errors.Is(err, ErrInsecureHost) {
			t.Errorf("New(Host: %s) = %v, want ErrInsecureHost", host, err)
		}
	}
	for _, host := range []string{"http://127.0.0.1:1", "http://localhost:8080/p", "http://[::1]:1", "https://example.invalid"} {
		if _, err := New(Config{Host: host, Token: testToken}); err != nil {
			t.Errorf("New(Host: %s) = %v", host, err)
		}
	}

	noNetwork := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		t.Errorf("request reached the network: %s", r.URL.Host)
		return nil, errors.New("no network in this test")
	})}
	c, err := New(Config{Host: "https://circleci.example", Token: testToken, HTTPClient: noNetwork})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Download(t.Context(), "http://example.invalid/a.txt", 0, "")
	if !errors.Is(err, ErrInsecureHost) || IsRetryable(err) {
		t.Errorf("Download over http = %v, want a permanent ErrInsecureHost", err)
	}
}

// TestPlainHTTPRefusedOnTransport: the transport itself refuses to put the
// token on a plain-http request to a non-loopback host, whoever built it.
func TestPlainHTTPRefusedOnTransport(t *testing.T) {
	tr := &authTransport{token: testToken, next: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		t.Errorf("request reached the network: %s", r.URL)
		return nil, errors.New("unreachable")
	})}
	req, _ := http.NewRequest("GET", "http://example.invalid/x", nil)
	req = req.WithContext(withTokenScope(t.Context(), req.URL))
	if _, err := tr.RoundTrip(req); !errors.Is(err, ErrInsecureHost) {
		t.Errorf("RoundTrip = %v, want ErrInsecureHost", err)
	}
}

func TestNew(t *testing.T) {
	for _, tok := range []string{"", "   ", "\t"} {
		if _, err := New(Config{Token: tok}); !errors.Is(err, ErrNoToken) {
			t.Errorf("New(Token: %q) = %v, want ErrNoToken", tok, err)
		}
	}
	if _, err := New(Config{Token: "abc def"}); err == nil {
		t.Error("token with a space accepted")
	}
	for _, host := range []string{"ftp://example.com", "circleci.com", "https://user:pw@circleci.com", "https://circleci.com/?x=1", "https://"} {
		if _, err := New(Config{Host: host, Token: testToken}); err == nil {
			t.Errorf("New(Host: %q) accepted", host)
		}
	}
	tests := []struct{ host, want string }{
		{"", "https://circleci.com/api/v2"},
		{"https://circleci.example/", "https://circleci.example/api/v2"},
		{"https://ci.example/circle%20ci/", "https://ci.example/circle%20ci/api/v2"},
	}
	for _, tt := range tests {
		c, err := New(Config{Host: tt.host, Token: testToken})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.base.String(); got != tt.want {
			t.Errorf("New(Host: %q) base = %s, want %s", tt.host, got, tt.want)
		}
	}
	// The caller's http.Client is used but not modified.
	hc := &http.Client{}
	if _, err := New(Config{Token: testToken, HTTPClient: hc}); err != nil {
		t.Fatal(err)
	}
	if hc.Transport != nil || hc.CheckRedirect != nil {
		t.Error("New modified the caller's http.Client")
	}
}

func TestIdleTimeout(t *testing.T) {
	const idle = 200 * time.Millisecond
	release := make(chan struct{})
	art := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/stall-body":
			w.Header().Set("Content-Length", "1000")
			w.Write([]byte("first bytes"))
			w.(http.Flusher).Flush()
		case "/slow-but-alive":
			w.Header().Set("Content-Length", "8")
			for range 8 {
				w.Write([]byte("x"))
				w.(http.Flusher).Flush()
				time.Sleep(idle / 2)
			}
			return
		case "/no-headers":
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(art.Close)
	t.Cleanup(func() { close(release) }) // runs before art.Close

	c := newAPIClient(t, func(cfg *Config) { cfg.IdleTimeout = idle })

	t.Run("body stalls", func(t *testing.T) {
		resp, err := c.Download(t.Context(), art.URL+"/stall-body", 0, "")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		start := time.Now()
		got, err := io.ReadAll(resp.Body)
		d := time.Since(start)
		if !errors.Is(err, ErrIdleTimeout) || !IsRetryable(err) {
			t.Errorf("read error = %v, want a retryable idle timeout", err)
		}
		if string(got) != "first bytes" {
			t.Errorf("read %q before the stall", got)
		}
		if d < idle/2 || d > 10*idle {
			t.Errorf("read failed after %s, want about %s", d, idle)
		}
	})
	t.Run("slow consumer is not a stalled server", func(t *testing.T) {
		resp, err := c.Download(t.Context(), art.URL+"/slow-but-alive", 0, "")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		time.Sleep(2 * idle) // the caller is busy; the server is not to blame
		got, err := io.ReadAll(resp.Body)
		if err != nil || string(got) != "xxxxxxxx" {
			t.Errorf("got %q, %v", got, err)
		}
	})
	t.Run("no response headers", func(t *testing.T) {
		start := time.Now()
		_, err := c.Download(t.Context(), art.URL+"/no-headers", 0, "")
		if d := time.Since(start); d > 10*idle {
			t.Errorf("failed after %s, want about %s", d, idle)
		}
		if !errors.Is(err, ErrIdleTimeout) || !IsRetryable(err) {
			t.Errorf("error = %v, want a retryable idle timeout", err)
		}
	})
	t.Run("caller deadline is not retryable", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), idle/4)
		defer cancel()
		_, err := c.Download(ctx, art.URL+"/no-headers", 0, "")
		if !errors.Is(err, context.DeadlineExceeded) || IsRetryable(err) {
			t.Errorf("error = %v, want a permanent context.DeadlineExceeded", err)
		}
	})
	t.Run("server never answers", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var conns []net.Conn
		var mu sync.Mutex
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, conn) // hold it open, say nothing
				mu.Unlock()
			}
		}()
		t.Cleanup(func() {
			ln.Close()
			mu.Lock()
			defer mu.Unlock()
			for _, c := range conns {
				c.Close()
			}
		})
		start := time.Now()
		_, err = c.Download(t.Context(), "http://"+ln.Addr().String()+"/a", 0, "")
		if d := time.Since(start); d > 10*idle {
			t.Errorf("failed after %s, want about %s", d, idle)
		}
		if !errors.Is(err, ErrIdleTimeout) || !IsRetryable(err) {
			t.Errorf("error = %v, want a retryable idle timeout", err)
		}

		// An API call against the same silent server retries, then fails
		// with a retryable error.
		api, err := New(Config{Host: "http://" + ln.Addr().String(), Token: testToken, IdleTimeout: idle,
			Retry: RetryPolicy{MaxAttempts: 2, InitialInterval: time.Millisecond}})
		if err != nil {
			t.Fatal(err)
		}
		start = time.Now()
		_, err = api.Me(t.Context())
		if d := time.Since(start); d < 2*idle*9/10 || d > 10*idle {
			t.Errorf("two attempts took %s, want about %s", d, 2*idle)
		}
		if !IsRetryable(err) {
			t.Errorf("error = %v, want retryable", err)
		}
	})
}
