package circlecitest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"
)

// escapeArtifactPath escapes each segment of an artifact path on its own,
// keeping the separators. Dot segments are escaped too (%2E%2E), so that no
// URL resolver on the way removes them: the path reaches the server, and
// then the client's own checks, verbatim.
func escapeArtifactPath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		switch s {
		case ".":
			segs[i] = "%2E"
		case "..":
			segs[i] = "%2E%2E"
		default:
			segs[i] = url.PathEscape(s)
		}
	}
	return strings.Join(segs, "/")
}

// ArtifactURLFor returns the URL the API lists for a:
// ArtifactURL/output/job/<job-uuid>/artifacts/<node>/<path>.
func (s *Server) ArtifactURLFor(a *Artifact) string { return s.artifactURL(a) }

func (s *Server) artifactURL(a *Artifact) string {
	return s.ArtifactURL + "/output/job/" + a.job.id + "/artifacts/" + strconv.Itoa(a.node) + "/" + escapeArtifactPath(a.path)
}

// lookupArtifact finds the artifact an escaped path names on the artifact
// host (/output/job/<id>/artifacts/<node>/<path>) or the storage host
// (/artifacts-bucket/<id>/<node>/<path>). It reports false if the path has
// neither shape.
func (s *Server) lookupArtifact(escaped string, storage bool) (*Artifact, bool) {
	var jobID, node, rest string
	if storage {
		r, ok := strings.CutPrefix(escaped, "/"+bucket+"/")
		if !ok {
			return nil, false
		}
		parts := strings.SplitN(r, "/", 3)
		if len(parts) != 3 {
			return nil, false
		}
		jobID, node, rest = parts[0], parts[1], parts[2]
	} else {
		parts := strings.SplitN(escaped, "/", 7)
		if len(parts) != 7 || parts[0] != "" || parts[1] != "output" || parts[2] != "job" || parts[4] != "artifacts" {
			return nil, false
		}
		jobID, node, rest = parts[3], parts[5], parts[6]
	}
	n, err := strconv.Atoi(node)
	if err != nil {
		return nil, true
	}
	p, err := url.PathUnescape(rest)
	if err != nil {
		return nil, true
	}
	s.world.mu.RLock()
	defer s.world.mu.RUnlock()
	return s.world.artifacts[artifactKey{jobID: jobID, node: n, path: p}], true
}

func artifactKeyString(a *Artifact) string {
	return a.job.id + "\x00" + strconv.Itoa(a.node) + "\x00" + a.path
}

// serveArtifactHost serves ArtifactURL: the bytes, or with Options.Redirect
// a 302 to a presigned URL on the storage host.
func (s *Server) serveArtifactHost(w http.ResponseWriter, r *http.Request) {
	escaped := r.URL.EscapedPath()
	a, ok := s.lookupArtifact(escaped, false)
	route := "download"
	if !ok {
		route = "not-found"
	}
	download := !s.opts.Redirect && a != nil
	if download {
		defer s.stats.enter(true)()
	}
	key := escaped
	if a != nil {
		key = artifactKeyString(a)
	}
	f := s.fault(Call{Host: HostArtifacts, Route: route, Download: download, Artifact: a, Key: key, Request: r})
	bw := s.newBodyWriter(w, r, f)
	lr := logEntry(r, HostArtifacts, route, escaped, f)
	defer func() { s.stats.recordAnswer(lr, bw) }()
	if !s.sleep(r.Context(), s.latency()) {
		panic(http.ErrAbortHandler)
	}
	switch f.Kind {
	case FaultStatus:
		s.serveFaultStatus(bw, r, HostArtifacts, f)
		return
	case FaultHang:
		s.hang(r.Context())
		panic(http.ErrAbortHandler)
	}
	defer bw.finish()
	switch {
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		writeBody(bw, r, http.StatusMethodNotAllowed, "text/plain; charset=utf-8", []byte("Method Not Allowed"))
	case s.checkAuth(r, s.opts.PublicArtifacts, false) != "":
		// What circle-artifacts.com answers exactly is not documented; a
		// 401 is what clients have reported.
		writeBody(bw, r, http.StatusUnauthorized, "text/plain; charset=utf-8", []byte("Unauthorized"))
	case a == nil:
		writeBody(bw, r, http.StatusNotFound, "text/plain; charset=utf-8", []byte("Not Found"))
	case s.opts.Redirect:
		bw.Header().Set("Location", s.presign(a))
		bw.Header().Set("Cache-Control", "no-cache")
		writeBody(bw, r, http.StatusFound, "text/plain; charset=utf-8", nil)
	default:
		s.serveContent(bw, r, a)
	}
}

// bucket is the first path segment of presigned URLs.
const bucket = "artifacts-bucket"

const amzDate = "20060102T150405Z"

// presign returns a presigned-looking URL for a on the storage host, valid
// for Options.PresignTTL.
func (s *Server) presign(a *Artifact) string {
	date := time.Now().UTC().Format(amzDate)
	expires := strconv.Itoa(int(s.opts.PresignTTL / time.Second))
	q := url.Values{
		"X-Amz-Algorithm":     {"AWS4-HMAC-SHA256"},
		"X-Amz-Credential":    {"AKIAFAKEFAKEFAKE/" + date[:8] + "/us-east-1/s3/aws4_request"},
		"X-Amz-Date":          {date},
		"X-Amz-Expires":       {expires},
		"X-Amz-SignedHeaders": {"host"},
		"X-Amz-Signature":     {s.signature(a, date, expires)},
	}
	return s.StorageURL + "/" + bucket + "/" + a.job.id + "/" + strconv.Itoa(a.node) + "/" + escapeArtifactPath(a.path) + "?" + q.Encode()
}

func (s *Server) signature(a *Artifact, date, expires string) string {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte(artifactKeyString(a) + "\x00" + date + "\x00" + expires))
	return hex.EncodeToString(m.Sum(nil))
}

// s3Error answers the way S3 does, in XML.
func s3Error(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	body := `<?xml version="1.0" encoding="UTF-8"?>` + "\n<Error><Code>" + code + "</Code><Message>" + msg + "</Message></Error>"
	writeBody(w, r, status, "application/xml", []byte(body))
}

// serveStorage serves StorageURL, the presigned storage host. It records any
// credential it receives, and like S3 refuses an Authorization header next
// to a presigned query ("Only one auth mechanism allowed").
func (s *Server) serveStorage(w http.ResponseWriter, r *http.Request) {
	escaped := r.URL.EscapedPath()
	a, ok := s.lookupArtifact(escaped, true)
	route := "storage"
	if !ok {
		route = "not-found"
	}
	if a != nil {
		defer s.stats.enter(true)()
	}
	for _, k := range []string{"Circle-Token", "Authorization", "Cookie"} {
		for _, v := range r.Header.Values(k) {
			s.stats.leak(Leak{Kind: k, Value: v, Path: escaped})
		}
	}
	if q := r.URL.Query(); q.Has("circle-token") {
		s.stats.leak(Leak{Kind: "circle-token", Value: q.Get("circle-token"), Path: escaped})
	}
	key := escaped
	if a != nil {
		key = artifactKeyString(a)
	}
	f := s.fault(Call{Host: HostStorage, Route: route, Download: a != nil, Artifact: a, Key: key, Request: r})
	bw := s.newBodyWriter(w, r, f)
	lr := logEntry(r, HostStorage, route, escaped, f)
	defer func() { s.stats.recordAnswer(lr, bw) }()
	if !s.sleep(r.Context(), s.latency()) {
		panic(http.ErrAbortHandler)
	}
	switch f.Kind {
	case FaultStatus:
		s.serveFaultStatus(bw, r, HostStorage, f)
		return
	case FaultHang:
		s.hang(r.Context())
		panic(http.ErrAbortHandler)
	}
	defer bw.finish()
	q := r.URL.Query()
	switch {
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		s3Error(bw, r, http.StatusMethodNotAllowed, "MethodNotAllowed", "The specified method is not allowed against this resource.")
	case r.Header.Get("Authorization") != "":
		s3Error(bw, r, http.StatusBadRequest, "InvalidArgument", "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified")
	case a == nil:
		s3Error(bw, r, http.StatusNotFound, "NoSuchKey", "The specified key does not exist.")
	case !hmac.Equal([]byte(q.Get("X-Amz-Signature")), []byte(s.signature(a, q.Get("X-Amz-Date"), q.Get("X-Amz-Expires")))):
		s3Error(bw, r, http.StatusForbidden, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided.")
	case presignExpired(q.Get("X-Amz-Date"), q.Get("X-Amz-Expires")):
		s3Error(bw, r, http.StatusForbidden, "AccessDenied", "Request has expired")
	default:
		s.serveContent(bw, r, a)
	}
}

func presignExpired(date, expires string) bool {
	t, err := time.Parse(amzDate, date)
	if err != nil {
		return true
	}
	secs, err := strconv.Atoi(expires)
	if err != nil {
		return true
	}
	return time.Now().After(t.Add(time.Duration(secs) * time.Second))
}

// serveContent sends a's bytes with Content-Length, ETag and Last-Modified,
// honouring Range and If-Range unless Options.NoRange.
func (s *Server) serveContent(bw *bodyWriter, r *http.Request, a *Artifact) {
	v := a.version()
	if s.opts.NoRange {
		r.Header.Del("Range")
		r.Header.Del("If-Range")
	}
	h := bw.Header()
	h.Set("ETag", v.etag())
	ct := mime.TypeByExtension(path.Ext(a.path))
	if ct == "" {
		ct = "application/octet-stream"
	}
	h.Set("Content-Type", ct)
	h.Set("Accept-Ranges", "bytes")
	if s.opts.NoRange {
		h.Set("Accept-Ranges", "none")
	}
	bw.rate = s.opts.Bandwidth
	get := r.Method == http.MethodGet
	if get {
		bw.onWrite = func(n int64) { s.stats.sent(a, n) }
		bw.onStatus = func(code int) {
			if code == http.StatusOK || code == http.StatusPartialContent {
				s.stats.started(a)
			}
		}
	}
	http.ServeContent(bw, r, "", v.modified, &contentReader{key: v.key, size: v.size})
	if !get || (bw.status != http.StatusOK && bw.status != http.StatusPartialContent) || bw.broken {
		return
	}
	if cl, err := strconv.ParseInt(h.Get("Content-Length"), 10, 64); err == nil && cl != bw.written {
		return
	}
	s.stats.completed(a)
}
