package circlecitest

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Options configure a Server. The zero value of every field but Token means
// the documented default.
type Options struct {
	// Token is the only personal API token the Server accepts. Required.
	Token string
	// PathPrefix mounts the API under a prefix, as on a CircleCI Server
	// installation behind a path: with "/ci" the API answers at
	// URL/api/v2 where URL ends in /ci.
	PathPrefix string
	// PageSize is the number of items on every list page; 0 means 20 for
	// pipelines, workflows and jobs and no limit for artifacts (the real
	// artifacts endpoint returns thousands of items in one body).
	PageSize int
	// Latency is added to every request, API and downloads alike.
	Latency time.Duration
	// Jitter spreads Latency: each request waits Latency plus a uniform
	// draw from [-Jitter, +Jitter] (never less than nothing), as on a
	// network whose delay varies from one connection or moment to the next.
	Jitter time.Duration
	// Bandwidth limits every artifact download to that many bytes per
	// second; 0 means unlimited.
	Bandwidth int64
	// PublicArtifacts lets downloads without any credential through, as for
	// a public project. A wrong credential is still refused.
	PublicArtifacts bool
	// Redirect makes the artifact host answer 302 to a presigned URL on a
	// third listener (StorageURL), as CircleCI does for most files.
	Redirect bool
	// PresignTTL is how long a presigned URL stays valid; 0 means 60s.
	PresignTTL time.Duration
	// NoRange makes the download hosts ignore Range and If-Range and always
	// answer 200 with the whole file.
	NoRange bool
	// Faults is the initial fault policy; nil means none. See SetFaults.
	Faults FaultFunc
	// TLS serves every host over HTTPS with a certificate made for this
	// Server (see CertPEM), offering HTTP/2 and HTTP/1.1 by ALPN, as the
	// real hosts do. Without it the hosts speak plain HTTP/1.1.
	TLS bool
	// HTTP1 names the hosts (HostAPI, HostArtifacts, HostStorage) that
	// offer only HTTP/1.1 over TLS, as S3 does for presigned storage.
	HTTP1 []string
	// V2ArtifactsGone, 404 or 410, retires API v2's job artifacts route:
	// it answers that status to every request, as CircleCI will once it
	// removes it. 0 serves it. See also RetireV2Artifacts.
	V2ArtifactsGone int
	// NoV3 serves no API v3, as on CircleCI Server: its routes answer 404.
	NoV3 bool
	// V3MaxLimit is the largest page[limit] API v3 takes; more answers
	// 400. 0 means DefaultV3MaxLimit. Without page[limit], a v3 page holds
	// PageSize items (0: all).
	V3MaxLimit int
	// Notices adds Deprecation, Sunset and Link headers to the answers of
	// the API routes they are keyed by (the names of Server.Requests;
	// "" for every route without its own).
	Notices map[string]Notice
	// RateLimit answers API requests beyond a budget per second with 429;
	// the zero value sets no limit.
	RateLimit RateLimit
}

// A Server serves a World over HTTP on 127.0.0.1: the API at URL + "/api/v2",
// artifact downloads at ArtifactURL and, with Options.Redirect, presigned
// storage at StorageURL. Each is its own listener with its own port, so they
// are different hosts to a client.
type Server struct {
	// URL is the API host, what a client takes as its --host
	// (http://127.0.0.1:port, plus Options.PathPrefix).
	URL string
	// ArtifactURL is the base of the artifact URLs the API lists.
	ArtifactURL string
	// StorageURL is the base of presigned URLs; "" without Options.Redirect.
	// Its host is named localhost (still 127.0.0.1) when that name resolves
	// there, so that it differs from the artifact host by name too.
	StorageURL string

	world  *World
	opts   Options
	secret []byte
	stats  *stats
	cert   *serverCert // nil without Options.TLS
	// limiter enforces Options.RateLimit; nil without one.
	limiter *rateLimiter

	connSeq atomic.Uint64
	// v2Gone is the status of the retired v2 artifacts route, 0 while it
	// serves (see RetireV2Artifacts).
	v2Gone atomic.Int64

	faultMu  sync.Mutex
	faults   FaultFunc
	seq      map[string]int
	attempts map[string]int

	hosts     []*listener
	closed    chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// NewServer starts serving w. Call Close when done.
func NewServer(w *World, opts Options) (*Server, error) {
	if w == nil {
		return nil, errors.New("circlecitest: nil World")
	}
	if opts.Token == "" {
		return nil, errors.New("circlecitest: Options.Token is required")
	}
	if opts.PathPrefix != "" && (!strings.HasPrefix(opts.PathPrefix, "/") || strings.HasSuffix(opts.PathPrefix, "/")) {
		return nil, fmt.Errorf("circlecitest: PathPrefix %q must start and not end with /", opts.PathPrefix)
	}
	if opts.PresignTTL == 0 {
		opts.PresignTTL = 60 * time.Second
	}
	for _, h := range opts.HTTP1 {
		if h != HostAPI && h != HostArtifacts && h != HostStorage {
			return nil, fmt.Errorf("circlecitest: Options.HTTP1 names unknown host %q", h)
		}
	}
	s := &Server{
		world:    w,
		opts:     opts,
		stats:    newStats(),
		faults:   opts.Faults,
		seq:      make(map[string]int),
		attempts: make(map[string]int),
		closed:   make(chan struct{}),
		limiter:  newRateLimiter(opts.RateLimit),
	}
	s.v2Gone.Store(int64(opts.V2ArtifactsGone))
	w.mu.RLock()
	var seed [8]byte
	binary.BigEndian.PutUint64(seed[:], w.seed)
	w.mu.RUnlock()
	sum := sha256.Sum256(append([]byte("circlecitest secret"), seed[:]...))
	s.secret = sum[:]
	if opts.TLS {
		var err error
		if s.cert, err = newServerCert(); err != nil {
			return nil, err
		}
	}

	api, err := s.listen(HostAPI, http.HandlerFunc(s.serveAPI))
	if err != nil {
		return nil, err
	}
	s.URL = api + opts.PathPrefix
	if s.ArtifactURL, err = s.listen(HostArtifacts, http.HandlerFunc(s.serveArtifactHost)); err != nil {
		s.Close()
		return nil, err
	}
	if opts.Redirect {
		if s.StorageURL, err = s.listen(HostStorage, http.HandlerFunc(s.serveStorage)); err != nil {
			s.Close()
			return nil, err
		}
		// Name the storage host "localhost": net/http keeps Authorization
		// on a redirect to the same host name whatever the port, and the
		// real storage is another host by name.
		if addrs, err := net.LookupHost("localhost"); err == nil && slices.Contains(addrs, "127.0.0.1") {
			s.StorageURL = strings.Replace(s.StorageURL, "127.0.0.1", "localhost", 1)
		}
	}
	s.serve()
	return s, nil
}

// Start starts a Server for a test and closes it when the test ends.
func Start(t testing.TB, w *World, opts Options) *Server {
	t.Helper()
	s, err := NewServer(w, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func (s *Server) listen(host string, h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("circlecitest: %w", err)
	}
	l := &listener{name: host, addr: ln.Addr().String(), conns: make(map[net.Conn]struct{})}
	l.ln = &gateListener{Listener: ln, l: l}
	l.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
		ConnState: func(c net.Conn, state http.ConnState) {
			switch state {
			case http.StateNew:
				s.stats.connected(host)
			case http.StateClosed, http.StateHijacked:
				l.forget(c)
			}
		},
		// Every connection gets a number, so that the request log says
		// which requests shared one (LoggedRequest.Conn).
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, s.connSeq.Add(1))
		},
	}
	scheme := "http"
	if s.cert != nil {
		scheme = "https"
		l.tls = true
		l.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{s.cert.pair}}
		var p http.Protocols
		p.SetHTTP1(true)
		p.SetHTTP2(!slices.Contains(s.opts.HTTP1, host))
		l.srv.Protocols = &p
	}
	s.hosts = append(s.hosts, l)
	return scheme + "://" + l.addr, nil
}

// serve starts serving every listener, once the Server's URLs are all set:
// handlers read them.
func (s *Server) serve() {
	for _, l := range s.hosts {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			l.serve(l.ln)
		}()
	}
}

// Close stops the listeners and drops every connection, ending stalls,
// hangs and outages. It may be called more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.closed)
		for _, l := range s.hosts {
			l.srv.Close()
		}
		s.wg.Wait()
	})
}

// OutageKind is how a host fails during a [Server.Outage].
type OutageKind int

const (
	// OutageRefuse closes the host's listening socket, so that connections
	// are refused (ECONNREFUSED), as when a service or its load balancer is
	// down.
	OutageRefuse OutageKind = iota + 1
	// OutageReset accepts connections and resets them (RST) before reading
	// anything, as a proxy in front of a failing service can.
	OutageReset
)

// Outage makes host (HostAPI, HostArtifacts or HostStorage) fail every
// connection for d from now: the connections open at the start are reset,
// and new ones are refused or reset as kind says. It returns at once; after
// d the host serves again, at the same address. Requests that fail this way
// never reach the handlers, so they are not counted or logged. A refusing
// outage started while one is under way drops the open connections again
// but ends when the first one does.
func (s *Server) Outage(host string, kind OutageKind, d time.Duration) {
	var l *listener
	for _, h := range s.hosts {
		if h.name == host {
			l = h
		}
	}
	if l == nil {
		panic("circlecitest: Outage of unknown host " + strconv.Quote(host))
	}
	l.mu.Lock()
	refuse := kind == OutageRefuse && !l.refusing
	switch kind {
	case OutageReset:
		l.resetUntil = time.Now().Add(d)
	case OutageRefuse:
		if refuse {
			l.refusing = true
			l.ln.Close() // Serve returns; it is started again below
		}
	default:
		l.mu.Unlock()
		panic(fmt.Sprintf("circlecitest: unknown OutageKind %d", kind))
	}
	open := make([]net.Conn, 0, len(l.conns))
	for c := range l.conns {
		open = append(open, c)
	}
	l.mu.Unlock()
	for _, c := range open {
		reset(c)
	}
	if !refuse {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if !s.sleep(context.Background(), d) {
			return // closed
		}
		ln, err := relisten(l.addr, s.closed)
		if err != nil {
			return
		}
		gl := &gateListener{Listener: ln, l: l}
		l.mu.Lock()
		l.ln = gl
		l.refusing = false
		l.mu.Unlock()
		l.serve(gl)
	}()
}

// relisten listens on addr again, waiting out a port that is not free yet.
func relisten(addr string, closed <-chan struct{}) (net.Listener, error) {
	for i := 0; ; i++ {
		ln, err := net.Listen("tcp", addr)
		if err == nil || i == 100 {
			return ln, err
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-closed:
			return nil, net.ErrClosed
		}
	}
}

// reset closes c with an RST rather than a FIN.
func reset(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if fc, ok := c.(*faultConn); ok {
		c = fc.NetConn()
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// listener is one of the Server's hosts: its HTTP server, its socket and its
// open connections, which an outage closes or resets.
type listener struct {
	name string
	addr string
	srv  *http.Server
	tls  bool // serve HTTPS (srv.TLSConfig does not tell: Serve sets it too)

	mu         sync.Mutex
	ln         net.Listener
	refusing   bool
	resetUntil time.Time
	conns      map[net.Conn]struct{}

	// cutEvery and cuts are the connection faults: see CutConnections.
	cutEvery atomic.Int64
	cuts     atomic.Int64
	// silenceAfter, silenceNext and silenced are the silences: see
	// SilenceConnections.
	silenceAfter, silenceNext, silenced atomic.Int64
}

// serve serves ln (a gateListener) over TLS when the Server has a
// certificate, until ln is closed.
func (l *listener) serve(ln net.Listener) {
	if l.tls {
		l.srv.ServeTLS(ln, "", "")
		return
	}
	l.srv.Serve(ln)
}

// connKey is the context key of a connection's number.
type connKey struct{}

func (l *listener) forget(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn() // the gateListener tracks the connection it accepted
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.conns, c)
}

// gateListener tracks the connections it accepts, and resets them during an
// outage.
type gateListener struct {
	net.Listener
	l *listener
}

func (g *gateListener) Accept() (net.Conn, error) {
	for {
		c, err := g.Listener.Accept()
		if err != nil {
			return nil, err
		}
		// Tracked here, under the lock an outage takes, so that no
		// connection slips between an outage's start and its tracking.
		g.l.mu.Lock()
		down := g.l.refusing || time.Now().Before(g.l.resetUntil)
		fc := newFaultConn(c, g.l)
		if !down {
			g.l.conns[fc] = struct{}{}
		}
		g.l.mu.Unlock()
		if !down {
			return fc, nil
		}
		reset(c)
	}
}

// World returns the World the Server serves.
func (s *Server) World() *World { return s.world }

// SetFaults replaces the fault policy (nil: none) and restarts the Seq and
// Attempt numbering of Calls.
func (s *Server) SetFaults(ff FaultFunc) {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	s.faults = ff
	s.seq = make(map[string]int)
	s.attempts = make(map[string]int)
}

// fault numbers the call and asks the policy about it.
func (s *Server) fault(c Call) Fault {
	s.faultMu.Lock()
	s.seq[c.Host]++
	c.Seq = s.seq[c.Host]
	k := c.Host + "\x00" + c.Key
	s.attempts[k]++
	c.Attempt = s.attempts[k]
	ff := s.faults
	s.faultMu.Unlock()
	if ff == nil {
		return Fault{}
	}
	return ff(c)
}

// sleep waits for d, or less if the request ends or the Server closes. It
// reports whether the whole d elapsed.
// latency is what one request waits before it is answered: Latency,
// spread by Jitter.
func (s *Server) latency() time.Duration {
	d := s.opts.Latency
	if j := s.opts.Jitter; j > 0 {
		d += time.Duration(rand.Int64N(int64(2*j)+1)) - j
	}
	return max(d, 0)
}

func (s *Server) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
	case <-s.closed:
	}
	return false
}

// hang waits until the request ends or the Server closes. The caller then
// drops the connection with panic(http.ErrAbortHandler), so that nothing is
// answered.
func (s *Server) hang(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-s.closed:
	}
}

// authScheme names the credential a request carries and returns it.
func authScheme(r *http.Request) (scheme, token string) {
	if v, ok := r.Header["Circle-Token"]; ok {
		return "circle-token", v[0]
	}
	if a := r.Header.Get("Authorization"); a != "" {
		if k, v, ok := strings.Cut(a, " "); ok && strings.EqualFold(k, "Bearer") {
			return "bearer", strings.TrimSpace(v)
		}
		if u, _, ok := r.BasicAuth(); ok {
			return "basic", u
		}
		return "other", ""
	}
	if r.URL.Query().Has("circle-token") {
		return "query", r.URL.Query().Get("circle-token")
	}
	return "", ""
}

// Messages of the API's 401 answers.
const (
	msgLogIn        = "You must log in first"
	msgInvalidToken = "Invalid token provided."
	msgQueryAuth    = "Support for query parameter authentication has been deprecated to improve security. Please use a supported authentication method such as header-based, or basic authentication."
)

// checkAuth returns "" if the request may proceed, or the message of a 401.
// allowAnonymous lets a request without any credential through; the
// deprecated query parameter counts as none on the artifact host, where it
// stopped working.
func (s *Server) checkAuth(r *http.Request, allowAnonymous, api bool) string {
	scheme, token := authScheme(r)
	switch {
	case scheme == "query" && api:
		return msgQueryAuth
	case scheme == "" || scheme == "query":
		if allowAnonymous {
			return ""
		}
		return msgLogIn
	case token != s.opts.Token:
		return msgInvalidToken
	}
	return ""
}

var (
	errCut       = errors.New("circlecitest: connection cut")
	errTruncated = errors.New("circlecitest: body truncated")
)

// bodyWriter is the ResponseWriter every handler writes through: it records
// the status and body bytes, applies the body faults and the bandwidth
// limit.
type bodyWriter struct {
	http.ResponseWriter
	s        *Server
	ctx      context.Context
	fault    Fault
	fired    bool // the body fault happened
	broken   bool // the connection is gone
	h2       bool // the request came over HTTP/2
	status   int
	answered time.Time
	written  int64
	onWrite  func(n int64)
	onStatus func(code int)
	rate     int64
	rateFrom time.Time
	rateSent int64
}

func (s *Server) newBodyWriter(w http.ResponseWriter, r *http.Request, f Fault) *bodyWriter {
	return &bodyWriter{ResponseWriter: w, s: s, ctx: r.Context(), fault: f, h2: r.ProtoMajor == 2}
}

func (bw *bodyWriter) Unwrap() http.ResponseWriter { return bw.ResponseWriter }

func (bw *bodyWriter) WriteHeader(code int) {
	if bw.status == 0 {
		bw.status = code
		bw.answered = time.Now()
		if bw.onStatus != nil {
			bw.onStatus(code)
		}
	}
	bw.ResponseWriter.WriteHeader(code)
}

func (bw *bodyWriter) Flush() {
	if f, ok := bw.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (bw *bodyWriter) bodyFault() bool {
	switch bw.fault.Kind {
	case FaultCut, FaultTruncate, FaultStall:
		return !bw.fired
	}
	return false
}

func (bw *bodyWriter) Write(p []byte) (int, error) {
	if bw.broken {
		return 0, errCut
	}
	if bw.status == 0 {
		bw.WriteHeader(http.StatusOK)
	}
	total := 0
	for len(p) > 0 {
		chunk := p
		if bw.bodyFault() {
			chunk = chunk[:min(int64(len(chunk)), bw.fault.After-bw.written)]
		}
		if bw.rate > 0 {
			chunk = chunk[:min(int64(len(chunk)), max(bw.rate/20, 1))]
		}
		if len(chunk) > 0 {
			n, err := bw.ResponseWriter.Write(chunk)
			bw.written += int64(n)
			total += n
			if bw.onWrite != nil {
				bw.onWrite(int64(n))
			}
			if err != nil {
				bw.broken = true
				return total, err
			}
			if !bw.throttle(int64(n)) {
				bw.broken = true
				return total, context.Canceled
			}
			p = p[n:]
		}
		if len(p) > 0 && bw.bodyFault() && bw.written >= bw.fault.After {
			if err := bw.fire(); err != nil {
				return total, err
			}
		}
	}
	return total, nil
}

// throttle waits until n more bytes fit the bandwidth limit; it reports
// false if the request ended meanwhile.
func (bw *bodyWriter) throttle(n int64) bool {
	if bw.rate <= 0 {
		return true
	}
	if bw.rateFrom.IsZero() {
		bw.rateFrom = time.Now()
	}
	bw.rateSent += n
	due := bw.rateFrom.Add(time.Duration(float64(bw.rateSent) / float64(bw.rate) * float64(time.Second)))
	return bw.s.sleep(bw.ctx, time.Until(due))
}

// fire carries out the body fault.
func (bw *bodyWriter) fire() error {
	bw.fired = true
	bw.Flush()
	switch bw.fault.Kind {
	case FaultStall:
		if !bw.s.sleep(bw.ctx, bw.fault.Duration) {
			bw.broken = true
			return context.Canceled
		}
		return nil
	case FaultTruncate:
		// Returning an error stops the handler; net/http closes a
		// connection whose body fell short of its Content-Length.
		bw.broken = true
		if bw.h2 {
			// HTTP/2 would end the stream cleanly, short: reset it
			// instead, the one way to fail a single request.
			panic(http.ErrAbortHandler)
		}
		return errTruncated
	default: // FaultCut
		bw.broken = true
		if bw.h2 {
			// The connection carries other requests: reset this
			// request's stream (RST_STREAM), as a cut does its own
			// connection over HTTP/1.1.
			panic(http.ErrAbortHandler)
		}
		conn, _, err := http.NewResponseController(bw.ResponseWriter).Hijack()
		if err != nil {
			return errCut
		}
		reset(conn)
		return errCut
	}
}

// finish runs a stall that the body was too short to trigger.
func (bw *bodyWriter) finish() {
	if bw.fault.Kind == FaultStall && !bw.fired && !bw.broken {
		bw.fired = true
		bw.Flush()
		bw.s.sleep(bw.ctx, bw.fault.Duration)
	}
}

// writeBody sends a complete body with its Content-Length.
func writeBody(w http.ResponseWriter, r *http.Request, status int, contentType string, body []byte) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

// serveFaultStatus answers a FaultStatus.
func (s *Server) serveFaultStatus(w http.ResponseWriter, r *http.Request, host string, f Fault) {
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	if host == HostAPI && !f.PlainText && strings.Contains(r.URL.Path, "/api/v3/") {
		if f.Status == http.StatusUnauthorized {
			// Token validation in front of v3 answers a bare message.
			writeJSON(w, r, f.Status, message{"Unauthorized"})
			return
		}
		writeJSON(w, r, f.Status, v3Error(f.Status, http.StatusText(f.Status), ""))
		return
	}
	if host == HostAPI && !f.PlainText {
		msg := http.StatusText(f.Status)
		switch f.Status {
		case http.StatusTooManyRequests:
			msg = "Rate limit exceeded."
		case http.StatusInternalServerError:
			msg = "Internal server error."
		}
		writeJSON(w, r, f.Status, message{msg})
		return
	}
	msg := http.StatusText(f.Status)
	if f.Status == http.StatusTooManyRequests {
		msg = "Rate limited."
	}
	writeBody(w, r, f.Status, "text/plain; charset=utf-8", []byte(msg))
}
