package circleci

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
)

// dialOnce lets one request at a time get a connection to an HTTPS host
// that speaks HTTP/2 or has not said yet, so that a host is dialed once and
// the connection then shared, instead of once per request in flight.
//
// net/http dials a connection for every request that finds none to use,
// and learns only after the TLS handshake that the host speaks HTTP/2 and
// one connection would have done: a burst of -j requests to a new host
// costs -j handshakes, of which it keeps one. The same happens after a
// shared connection is lost, when every retry comes at once. Here the
// other requests wait until the first has its connection (traced with
// httptrace.GotConn, or its answer); over HTTP/2 they then find it in the
// transport's pool and only take a stream of it, which is immediate. A
// host that answers in HTTP/1.1 is let through from then on, to open as
// many connections as requests in flight, as before.
type dialOnce struct {
	next http.RoundTripper

	mu    sync.Mutex
	hosts map[string]*hostConn // by origin
}

// hostConn is what dialOnce knows of one HTTPS host.
type hostConn struct {
	http1   bool     // it answered over HTTP/1.1: no more waiting
	opening *opening // the request getting a connection, nil if none
}

// opening is a request getting a connection for the ones that wait.
type opening struct {
	done chan struct{} // closed once it has a connection or failed
	// unreachable is set, before done is closed, when the request failed
	// to connect. Another failure (a connection it found lost) lets the
	// next request try, alone.
	unreachable bool
}

func (d *dialOnce) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "https" {
		return d.next.RoundTrip(req)
	}
	key := origin(req.URL)
	for {
		d.mu.Lock()
		if d.hosts == nil {
			d.hosts = make(map[string]*hostConn)
		}
		h := d.hosts[key]
		if h == nil {
			h = &hostConn{}
			d.hosts[key] = h
		}
		if h.http1 {
			d.mu.Unlock()
			return d.next.RoundTrip(req)
		}
		if op := h.opening; op != nil {
			d.mu.Unlock()
			select {
			case <-op.done:
			case <-req.Context().Done():
				return nil, req.Context().Err()
			}
			if op.unreachable {
				// It could not connect (refused, a timeout): the others
				// try their own, at once, rather than each wait for the
				// one before it to fail.
				return d.next.RoundTrip(req)
			}
			continue
		}
		op := &opening{done: make(chan struct{})}
		h.opening = op
		d.mu.Unlock()
		return d.open(req, h, op)
	}
}

// open sends req, which gets a connection for the requests that wait for
// op, and ends op as soon as it has one.
func (d *dialOnce) open(req *http.Request, h *hostConn, op *opening) (*http.Response, error) {
	var once sync.Once
	end := func(unreachable, http1 bool) {
		once.Do(func() {
			d.mu.Lock()
			op.unreachable = unreachable
			if http1 {
				h.http1 = true
			}
			h.opening = nil
			d.mu.Unlock()
			close(op.done)
		})
	}
	trace := &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			tc, ok := info.Conn.(*tls.Conn)
			end(false, ok && tc.ConnectionState().NegotiatedProtocol != "h2")
		},
	}
	resp, err := d.next.RoundTrip(req.WithContext(httptrace.WithClientTrace(req.Context(), trace)))
	// A transport that does not trace its connections ends op here.
	end(err != nil && cannotConnect(err), err == nil && resp.ProtoMajor != 2)
	return resp, err
}

// cannotConnect reports whether err is a failure to set up a connection:
// a dial refused or timed out, a name that does not resolve, a TLS
// handshake that failed or timed out.
func cannotConnect(err error) bool {
	var (
		op   *net.OpError
		dns  *net.DNSError
		cert *tls.CertificateVerificationError
		rec  tls.RecordHeaderError
		ne   net.Error
	)
	return errors.As(err, &op) && op.Op == "dial" || errors.As(err, &dns) ||
		errors.As(err, &cert) || errors.As(err, &rec) || errors.As(err, &ne) && ne.Timeout()
}
