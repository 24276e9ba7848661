package circlecitest

import (
	"maps"
	"net/http"
	"sync"
	"time"
)

// LoggedRequest is one request as the Server saw it.
type LoggedRequest struct {
	Host   string // HostAPI, HostArtifacts or HostStorage
	Route  string
	Method string
	Path   string // escaped, as sent
	Query  string // raw query
	// Auth names the credential the request carried: "circle-token",
	// "bearer", "basic", "query" (?circle-token=), "other" or "".
	Auth   string
	Status int // 0 if nothing was answered
	Fault  Fault
	// Proto is the protocol the request came over: "HTTP/1.1" or
	// "HTTP/2.0".
	Proto string
	// Conn numbers the connection the request came over, the same for
	// every request that shared it (numbers are unique across hosts).
	Conn uint64
	// Received is when the request reached its handler, before
	// Options.Latency; Answered when its status line was sent (zero if it
	// was not); Finished when its handler returned.
	Received, Answered, Finished time.Time
	// Range is the request's Range header, as sent.
	Range string
	// Bytes counts the body bytes sent in answer.
	Bytes int64
}

// A Leak is a credential that reached the storage host, which must never
// see one: presigned URLs carry their own authorization.
type Leak struct {
	// Kind is "Circle-Token", "Authorization", "Cookie" or "circle-token"
	// (the query parameter).
	Kind  string
	Value string
	Path  string
}

// DownloadStats count the transfers of one artifact's bytes.
type DownloadStats struct {
	// Started counts requests that began serving the bytes (200 or 206).
	Started int
	// Completed counts those that sent every byte they declared.
	Completed int
	// Bytes counts the body bytes sent.
	Bytes int64
}

// stats are the Server's counters, guarded by mu.
type stats struct {
	mu            sync.Mutex
	requests      map[string]int
	log           []LoggedRequest
	downloads     map[*Artifact]*DownloadStats
	bytes         int64
	inDownloads   int
	peakDownloads int
	inAPI         int
	peakAPI       int
	leaks         []Leak
	conns         map[string]int // connections accepted, by host
}

func newStats() *stats {
	return &stats{requests: make(map[string]int), downloads: make(map[*Artifact]*DownloadStats), conns: make(map[string]int)}
}

func (st *stats) reset() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.requests = make(map[string]int)
	st.log = nil
	st.downloads = make(map[*Artifact]*DownloadStats)
	st.bytes = 0
	st.peakDownloads = st.inDownloads
	st.peakAPI = st.inAPI
	st.leaks = nil
	st.conns = make(map[string]int)
}

func (st *stats) connected(host string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.conns[host]++
}

func (st *stats) record(lr LoggedRequest) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.requests[lr.Route]++
	st.log = append(st.log, lr)
}

// enter counts a request in flight and returns the function that ends it.
func (st *stats) enter(download bool) func() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if download {
		st.inDownloads++
		st.peakDownloads = max(st.peakDownloads, st.inDownloads)
		return func() {
			st.mu.Lock()
			defer st.mu.Unlock()
			st.inDownloads--
		}
	}
	st.inAPI++
	st.peakAPI = max(st.peakAPI, st.inAPI)
	return func() {
		st.mu.Lock()
		defer st.mu.Unlock()
		st.inAPI--
	}
}

func (st *stats) download(a *Artifact) *DownloadStats {
	d := st.downloads[a]
	if d == nil {
		d = new(DownloadStats)
		st.downloads[a] = d
	}
	return d
}

func (st *stats) started(a *Artifact) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.download(a).Started++
}

func (st *stats) completed(a *Artifact) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.download(a).Completed++
}

func (st *stats) sent(a *Artifact, n int64) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.download(a).Bytes += n
	st.bytes += n
}

func (st *stats) leak(l Leak) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.leaks = append(st.leaks, l)
}

// Connections returns how many TCP connections host (HostAPI,
// HostArtifacts or HostStorage) has accepted since the last ResetStats: with
// keep-alive, about as many as the client's concurrency, however many
// requests it made.
func (s *Server) Connections(host string) int {
	s.stats.mu.Lock()
	defer s.stats.mu.Unlock()
	return s.stats.conns[host]
}

// ConnectionsUsed returns how many connections carried at least one
// request to host since the last ResetStats. It can be lower than
// Connections: a client that opens several connections at once to a host it
// then finds speaks HTTP/2 keeps one and closes the others unused.
func (s *Server) ConnectionsUsed(host string) int {
	s.stats.mu.Lock()
	defer s.stats.mu.Unlock()
	used := make(map[uint64]bool)
	for _, lr := range s.stats.log {
		if lr.Host == host {
			used[lr.Conn] = true
		}
	}
	return len(used)
}

// Requests returns how many requests were made for route since the last
// ResetStats. API routes: "me", "project", "pipelines", "pipeline-by-number",
// "pipeline", "workflows", "workflow", "jobs", "job", "artifacts",
// "job-by-id" (GET /api/v2/jobs/{id}), "v3-artifacts". Download
// hosts: "download" (artifact host), "storage" (storage host). Anything
// else: "not-found".
func (s *Server) Requests(route string) int {
	s.stats.mu.Lock()
	defer s.stats.mu.Unlock()
	return s.stats.requests[route]
}

// RequestCounts returns the counts of every route that was requested.
func (s *Server) RequestCounts() map[string]int {
	s.stats.mu.Lock()
	defer s.stats.mu.Unlock()
	return maps.Clone(s.stats.requests)
}

// RequestLog returns every request since the last ResetStats, in the order
// they finished.
func (s *Server) RequestLog() []LoggedRequest {
	s.stats.mu.Lock()
	defer s.stats.mu.Unlock()
	return append([]LoggedRequest(nil), s.stats.log...)
}

// Downloads returns the transfer counts of a.
func (s *Server) Downloads(a *Artifact) DownloadStats {
	s.stats.mu.Lock()
	defer s.stats.mu.Unlock()
	if d := s.stats.downloads[a]; d != nil {
		return *d
	}
	return DownloadStats{}
}

// DownloadTotals returns the transfer counts summed over all artifacts.
func (s *Server) DownloadTotals() DownloadStats {
	s.stats.mu.Lock()
	defer s.stats.mu.Unlock()
	var t DownloadStats
	for _, d := range s.stats.downloads {
		t.Started += d.Started
		t.Completed += d.Completed
		t.Bytes += d.Bytes
	}
	return t
}

// BytesServed returns the artifact body bytes sent.
func (s *Server) BytesServed() int64 {
	s.stats.mu.Lock()
	defer s.stats.mu.Unlock()
	return s.stats.bytes
}

// PeakConcurrentDownloads returns the most requests serving artifact bytes
// that were in flight at once.
func (s *Server) PeakConcurrentDownloads() int {
	s.stats.mu.Lock()
	defer s.stats.mu.Unlock()
	return s.stats.peakDownloads
}

// PeakConcurrentAPI returns the most API requests that were in flight at
// once.
func (s *Server) PeakConcurrentAPI() int {
	s.stats.mu.Lock()
	defer s.stats.mu.Unlock()
	return s.stats.peakAPI
}

// LeakedCredentials returns the credentials the storage host received.
func (s *Server) LeakedCredentials() []Leak {
	s.stats.mu.Lock()
	defer s.stats.mu.Unlock()
	return append([]Leak(nil), s.stats.leaks...)
}

// ResetStats zeroes every counter and empties the logs. It leaves the fault
// policy's attempt numbering alone (SetFaults restarts it).
func (s *Server) ResetStats() { s.stats.reset() }

// logEntry starts the log entry of r, received now, on host.
func logEntry(r *http.Request, host, route, escaped string, f Fault) LoggedRequest {
	scheme, _ := authScheme(r)
	conn, _ := r.Context().Value(connKey{}).(uint64)
	return LoggedRequest{
		Host: host, Route: route, Method: r.Method, Path: escaped, Query: r.URL.RawQuery,
		Auth: scheme, Fault: f, Proto: r.Proto, Conn: conn, Received: time.Now(), Range: r.Header.Get("Range"),
	}
}

// recordAnswer completes lr with what bw answered and records it.
func (st *stats) recordAnswer(lr LoggedRequest, bw *bodyWriter) {
	lr.Status = bw.status
	lr.Answered = bw.answered
	lr.Finished = time.Now()
	lr.Bytes = bw.written
	st.record(lr)
}
