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
}

func (c *faultConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
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
