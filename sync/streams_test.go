package sync_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci"
	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
	ccsync "github.com/artifact-sync/artifact-sync/sync"
)

// largeWorld is one job with one artifact of each size.
func largeWorld(sizes ...int64) (*circlecitest.World, []*circlecitest.Artifact) {
	w := circlecitest.NewWorld()
	j := w.AddProject("gh/acme/widgets", "main").AddPipeline("main").AddWorkflow("build").AddJob("big", circlecitest.JobOptions{})
	var arts []*circlecitest.Artifact
	for i, size := range sizes {
		arts = append(arts, j.AddArtifact(0, fmt.Sprintf("big%d.bin", i), size))
	}
	return w, arts
}

// downloads returns the requests for artifact bytes in log.
func downloads(log []circlecitest.LoggedRequest) []circlecitest.LoggedRequest {
	return slices.DeleteFunc(log, func(lr circlecitest.LoggedRequest) bool {
		return lr.Route != "download" && lr.Route != "storage"
	})
}

// checkRangesOnce fails t if two range requests for the same file asked
// for the same byte.
func checkRangesOnce(t *testing.T, log []circlecitest.LoggedRequest) {
	t.Helper()
	type span struct{ from, to int64 }
	byPath := map[string][]span{}
	for _, lr := range log {
		var first, last int64
		if _, err := fmt.Sscanf(lr.Range, "bytes=%d-%d", &first, &last); err != nil {
			continue
		}
		byPath[lr.Path] = append(byPath[lr.Path], span{first, last + 1})
	}
	for p, spans := range byPath {
		slices.SortFunc(spans, func(a, b span) int { return int(a.from - b.from) })
		for i := 1; i < len(spans); i++ {
			if spans[i].from < spans[i-1].to {
				t.Errorf("%s: bytes %d-%d asked for twice (ranges %v and %v)", p, spans[i].from, min(spans[i].to, spans[i-1].to)-1, spans[i-1], spans[i])
			}
		}
	}
}

// A stream freed by a finished download joins the others: with more
// large files than extra streams, the first to finish gives its streams to
// the rest, so the number of connections at work stays near the limit
// until little is left, and every byte is asked for once.
func TestFreedStreamsFollowTheWork(t *testing.T) {
	const size = 24 << 20
	w, arts := largeWorld(size, size, size)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token, Bandwidth: 2 << 20})
	client := newClient(t, srv.URL)
	dest, dir := localSink(t)
	opts := pullOpts()
	// At most 3 first streams and 8 extra ones: 11 connections.
	const limit = 3 + 8
	opts.Concurrency, opts.MultiThreadStreams, opts.MultiThreadCutoff = 8, 8, 1<<20
	sum, err := ccsync.Pull(t.Context(), client, client, slug, &ccsync.Selection{}, dest, opts)
	if err != nil || sum.Transferred != 3 {
		t.Fatalf("%+v, %v", sum, err)
	}
	checkTree(t, dir, arts)

	log := downloads(srv.RequestLog())
	checkRangesOnce(t, log)
	// The first GET of each file is closed where its range ends, with at
	// most what the server had in flight sent past it.
	if served, slack := srv.BytesServed(), int64(len(arts))<<19; served > 3*size+slack {
		t.Errorf("%d bytes served for %d: %.3fx", served, 3*size, float64(served)/(3*size))
		for _, lr := range log {
			var first, last int64
			fmt.Sscanf(lr.Range, "bytes=%d-%d", &first, &last)
			if lr.Range == "" || lr.Bytes != last-first+1 {
				t.Logf("%s %q: %d bytes sent, status %d, fault %v", lr.Path[strings.LastIndex(lr.Path, "/")+1:], lr.Range, lr.Bytes, lr.Status, lr.Fault)
			}
		}
	}

	// Connections at work over time, from when the first file was done to
	// the end.
	done := map[string]time.Time{}
	var end time.Time
	type event struct {
		at time.Time
		d  int
	}
	var events []event
	for _, lr := range log {
		if lr.Finished.After(done[lr.Path]) {
			done[lr.Path] = lr.Finished
		}
		if lr.Finished.After(end) {
			end = lr.Finished
		}
		events = append(events, event{lr.Received, 1}, event{lr.Finished, -1})
	}
	firstDone := end
	for _, at := range done {
		if at.Before(firstDone) {
			firstDone = at
		}
	}
	slices.SortFunc(events, func(a, b event) int { return a.at.Compare(b.at) })
	var busy float64 // connection-seconds from firstDone to end
	n, last := 0, time.Time{}
	for _, ev := range events {
		if !last.IsZero() && ev.at.After(firstDone) {
			busy += float64(n) * ev.at.Sub(maxTime(last, firstDone)).Seconds()
		}
		n += ev.d
		last = ev.at
	}
	mean := busy / end.Sub(firstDone).Seconds()
	t.Logf("%.1f connections at work on average over the %v after the first file was done (limit %d); %d requests",
		mean, end.Sub(firstDone).Round(time.Millisecond), limit, len(log))
	if mean < 0.6*limit {
		t.Errorf("%.1f connections at work on average once the first file was done, of %d: its streams were not taken by the others", mean, limit)
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// delayDialer dials connections whose incoming bytes arrive latency ±
// jitter late, with at most window bytes on their way, as over a long
// path; the handshake takes latency too.
func delayDialer(latency, jitter time.Duration, window int) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Control: func(string, string, syscall.RawConn) error {
		time.Sleep(latency)
		return nil
	}}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		dc := &delayConn{Conn: c, ch: make(chan delayed, window/(32<<10)), closed: make(chan struct{})}
		go dc.pump(latency, jitter)
		return dc, nil
	}
}

type delayed struct {
	b   []byte
	due time.Time
	err error
}

type delayConn struct {
	net.Conn
	ch        chan delayed
	cur       []byte
	err       error
	closed    chan struct{}
	closeOnce sync.Once
}

// pump reads what arrives and queues it to be read once due, in order.
func (c *delayConn) pump(latency, jitter time.Duration) {
	defer close(c.ch)
	var last time.Time
	for {
		b := make([]byte, 32<<10)
		n, err := c.Conn.Read(b)
		due := time.Now().Add(latency)
		if jitter > 0 {
			due = due.Add(time.Duration(rand.Int64N(int64(2*jitter))) - jitter)
		}
		due = maxTime(due, last)
		last = due
		select {
		case c.ch <- delayed{b[:n], due, err}:
		case <-c.closed:
			return
		}
		if err != nil {
			return
		}
	}
}

func (c *delayConn) Read(p []byte) (int, error) {
	for len(c.cur) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		d, ok := <-c.ch
		if !ok {
			return 0, net.ErrClosed
		}
		time.Sleep(time.Until(d.due))
		c.cur, c.err = d.b, d.err
	}
	n := copy(p, c.cur)
	c.cur = c.cur[n:]
	return n, nil
}

func (c *delayConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// Splitting a download never costs bytes: over a path with a long round
// trip, where cutting the first answer short would throw away what is on
// its way, the server sends each byte once.
func TestSplittingCostsNoBytes(t *testing.T) {
	const size = 24 << 20
	for _, latency := range []time.Duration{50 * time.Millisecond, 200 * time.Millisecond} {
		t.Run(latency.String(), func(t *testing.T) {
			w, arts := largeWorld(size, size)
			srv := circlecitest.Start(t, w, circlecitest.Options{Token: token})
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.DialContext = delayDialer(latency, latency/2, 4<<20)
			tr.MaxIdleConnsPerHost = 64
			client, err := circleci.New(circleci.Config{
				Host: srv.URL, Token: token, HTTPClient: &http.Client{Transport: tr},
				Retry: circleci.RetryPolicy{MaxAttempts: 5, InitialInterval: time.Millisecond, MaxInterval: 10 * time.Millisecond},
			})
			if err != nil {
				t.Fatal(err)
			}
			dest, dir := localSink(t)
			opts := pullOpts()
			opts.MultiThreadCutoff = 1 << 20
			start := time.Now()
			sum, err := ccsync.Pull(t.Context(), client, client, slug, &ccsync.Selection{}, dest, opts)
			if err != nil || sum.Transferred != 2 {
				t.Fatalf("%+v, %v", sum, err)
			}
			checkTree(t, dir, arts)
			log := downloads(srv.RequestLog())
			checkRangesOnce(t, log)
			var gets []string
			for _, lr := range log {
				if lr.Range == "" {
					gets = append(gets, fmt.Sprintf("%s: %d bytes", lr.Path[strings.LastIndex(lr.Path, "/")+1:], lr.Bytes))
				}
			}
			served := srv.BytesServed()
			t.Logf("%v: %d requests, served %.3fx, in %v", latency, len(log), float64(served)/(2*size), time.Since(start).Round(time.Millisecond))
			if served > 2*size*102/100 {
				t.Errorf("served %d bytes for %d (%.3fx) in %d requests: bytes sent, then thrown away (the first GETs sent %s)",
					served, 2*size, float64(served)/(2*size), len(log), strings.Join(gets, ", "))
			}
		})
	}
}

// An interrupt while streams move between files keeps exactly what
// arrived: the rerun asks only for the bytes no stream wrote, whatever the
// moment (seeded; the seed is in the name of the failing subtest).
func TestInterruptWhileStreamsMoveResumesExactly(t *testing.T) {
	const size = 8 << 20
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 21))
			w, arts := largeWorld(size, size/2, size)
			total := int64(size + size/2 + size)
			srv := circlecitest.Start(t, w, circlecitest.Options{Token: token, Bandwidth: 2 << 20})
			client := newClient(t, srv.URL)
			dest, dir := localSink(t)
			opts := pullOpts()
			opts.Concurrency, opts.MultiThreadStreams, opts.MultiThreadCutoff = 4, 4, 1<<20
			// After the smaller file is done and its streams have moved.
			at := total/2 + r.Int64N(total*2/5)
			ctx, cancel := context.WithCancel(t.Context())
			go func() {
				for srv.BytesServed() < at && ctx.Err() == nil {
					time.Sleep(time.Millisecond)
				}
				cancel()
			}()
			if _, err := ccsync.Pull(ctx, client, client, slug, &ccsync.Selection{}, dest, opts); err == nil {
				t.Fatal("the interrupted pull reported success")
			}
			first := srv.BytesServed()
			sum, err := ccsync.Pull(t.Context(), client, client, slug, &ccsync.Selection{}, dest, opts)
			if err != nil || sum.Failed != 0 {
				t.Fatalf("rerun: %+v, %v", sum, err)
			}
			checkTree(t, dir, arts)
			served := srv.BytesServed()
			// What was on its way at the interrupt (a write of the
			// server's, 100 KiB at this rate, on each of 7 connections)
			// and what the first GETs sent past their cut.
			slack := int64(7*(128<<10) + 3*(128<<10))
			t.Logf("interrupted at %d of %d bytes served; both runs %d bytes, %.3fx", first, total, served, float64(served)/float64(total))
			if served > total+slack {
				t.Errorf("served %d bytes over both runs for %d: %d more than what was on its way at the interrupt, fetched again", served, total, served-total-slack)
			}
		})
	}
}
