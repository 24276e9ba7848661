package circlecitest

import (
	"net"
	"strconv"
	"sync"
	"sync/atomic"
)

// CutConnections makes host (HostAPI, HostArtifacts or HostStorage) reset
// (RST) each of its TCP connections once it has sent every bytes on it, the
// open ones included; 0 stops it. It acts below TLS and HTTP, as a TCP
// fault proxy in front of the host does: over HTTP/1.1 a cut fails the one
// request its connection carries, over HTTP/2 every request the connection
// carries at that moment, where a [FaultCut] resets one stream. The bytes
// counted are those on the wire, TLS records included.
func (s *Server) CutConnections(host string, every int64) {
	s.host(host).cutEvery.Store(every)
}

// ConnectionsCut returns how many connections host reset for
// CutConnections since the Server started.
func (s *Server) ConnectionsCut(host string) int {
	return int(s.host(host).cuts.Load())
}

// SilenceConnections makes the next n connections host accepts go silent
// once they have sent after bytes: from then on they neither send nor read
// but stay open, as a connection does whose path has gone (a NAT or load
// balancer that forgot it, a peer that vanished) until TCP gives up many
// minutes later. Only the client can tell, by an answer that never comes.
func (s *Server) SilenceConnections(host string, after int64, n int) {
	h := s.host(host)
	h.silenceAfter.Store(after)
	h.silenceNext.Store(int64(n))
}

// ConnectionsSilenced returns how many connections of host went silent for
// SilenceConnections.
func (s *Server) ConnectionsSilenced(host string) int {
	return int(s.host(host).silenced.Load())
}

// host returns the listener of host.
func (s *Server) host(host string) *listener {
	for _, h := range s.hosts {
		if h.name == host {
			return h
		}
	}
	panic("circlecitest: unknown host " + strconv.Quote(host))
}

// faultConn is a connection a listener accepted: it counts the bytes sent
// and resets the connection as the listener's connection faults say.
type faultConn struct {
	net.Conn
	l    *listener
	mu   sync.Mutex
	sent int64
	cut  atomic.Bool

	// silenceAt is where the connection goes silent (0: never), silent
	// whether it has (its reads wait for Close, its writes vanish), and
	// closed is closed by Close.
	silenceAt int64
	silent    atomic.Bool
	closed    chan struct{}
	closeOnce sync.Once
}

// newFaultConn is c as a connection of l, taking one of the silences
// SilenceConnections asked for.
func newFaultConn(c net.Conn, l *listener) *faultConn {
	fc := &faultConn{Conn: c, l: l, closed: make(chan struct{})}
	if l.silenceNext.Add(-1) >= 0 {
		fc.silenceAt = l.silenceAfter.Load()
	}
	return fc
}

func (c *faultConn) Read(p []byte) (int, error) {
	if c.silent.Load() {
		<-c.closed
		return 0, net.ErrClosed
	}
	return c.Conn.Read(p)
}

func (c *faultConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

func (c *faultConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.silenceAt > 0 && c.sent+int64(len(p)) >= c.silenceAt {
		// Past the point of silence, writes vanish as into a path that
		// is gone: they seem to succeed and nothing arrives.
		n, err := c.Conn.Write(p[:max(c.silenceAt-c.sent, 0)])
		c.sent += int64(n)
		if err != nil {
			return n, err
		}
		if c.silent.CompareAndSwap(false, true) {
			c.l.silenced.Add(1)
		}
		return len(p), nil
	}
	every := c.l.cutEvery.Load()
	if every <= 0 || c.sent+int64(len(p)) < every {
		n, err := c.Conn.Write(p)
		c.sent += int64(n)
		return n, err
	}
	n, err := c.Conn.Write(p[:max(every-c.sent, 0)])
	c.sent += int64(n)
	if err != nil {
		return n, err
	}
	if c.cut.CompareAndSwap(false, true) {
		c.l.cuts.Add(1)
	}
	reset(c.Conn)
	return n, net.ErrClosed
}

// NetConn returns the TCP connection, for reset.
func (c *faultConn) NetConn() net.Conn { return c.Conn }
