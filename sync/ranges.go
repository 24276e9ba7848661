package sync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"slices"
	stdsync "sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/artifact-sync/artifact-sync/sink"
)

// Defaults for fetching one large artifact over several connections at once,
// named as rclone names them.
const (
	DefaultMultiThreadStreams = 8
	DefaultMultiThreadCutoff  = 64 << 20
)

// RangeDownloader fetches a byte range of an artifact URL; implemented by
// *circleci.Client.
type RangeDownloader interface {
	DownloadRange(ctx context.Context, rawURL string, first, last int64, ifRange string) (*http.Response, error)
}

// multiStream decides whether the answer resp to a plain GET should be
// completed over several connections: the file is large, the server takes
// ranges, and the destination can take pieces.
func (e *engine) multiStream(a *Artifact, resp *http.Response) (sink.RangeWriter, RangeDownloader, bool) {
	if e.opts.MultiThreadStreams < 2 || a.noRanges || resp.StatusCode != http.StatusOK || resp.ContentLength < e.opts.MultiThreadCutoff {
		return nil, nil, false
	}
	if sourceValidator(resp) == "" {
		// Nothing would prove the ranges to be of this version (see
		// checkResume).
		return nil, nil, false
	}
	if resp.Header.Get("Accept-Ranges") != "bytes" {
		return nil, nil, false
	}
	rw, ok := e.dest.(sink.RangeWriter)
	if !ok {
		return nil, nil, false
	}
	rd, ok := e.dl.(RangeDownloader)
	if !ok {
		return nil, nil, false
	}
	return rw, rd, true
}

// rangeResume decides whether kept ranges of a, total bytes, should be
// completed over several connections (the same conditions as multiStream).
func (e *engine) rangeResume(a *Artifact, total int64) (sink.RangeResumer, RangeDownloader, bool) {
	if e.opts.MultiThreadStreams < 2 || a.noRanges || total < e.opts.MultiThreadCutoff {
		return nil, nil, false
	}
	rr, ok := e.dest.(sink.RangeResumer)
	if !ok {
		return nil, nil, false
	}
	rd, ok := e.dl.(RangeDownloader)
	if !ok {
		return nil, nil, false
	}
	return rr, rd, true
}

// errRangesRefused says a range request was answered with something else
// (see checkResume): the server ignores ranges after all, or the file
// changed (a 200 to If-Range, or a 206 of another version from a server
// that ignores If-Range). The kept bytes are dropped and the artifact is
// fetched again over one connection.
var errRangesRefused = errors.New("range request refused")

// part is one range of a multi-stream download.
type part struct {
	first, last int64 // inclusive
	done        int64 // bytes written so far
}

// fetchRanges downloads a, whose plain GET resp is under way, into a new
// pending object over several connections.
func (e *engine) fetchRanges(ctx context.Context, a *Artifact, resp *http.Response, rw sink.RangeWriter, rd RangeDownloader, opts sink.PutOptions) (sink.Info, error) {
	pending, err := rw.Create(ctx, a.Key, resp.ContentLength, opts)
	if err != nil {
		return sink.Info{}, err
	}
	return e.fill(ctx, a, pending, resp.ContentLength, nil, resp.Body, rd, opts.Validator)
}

// resumeRanges completes the kept ranges part of a; resp is under way with
// the bytes from the first missing one on.
func (e *engine) resumeRanges(ctx context.Context, a *Artifact, resp *http.Response, rr sink.RangeResumer, rd RangeDownloader, part sink.PartialInfo, opts sink.PutOptions) (sink.Info, error) {
	pending, err := rr.Reopen(ctx, a.Key, part.Total, opts)
	if err != nil {
		return sink.Info{}, err
	}
	have := part.Spans
	if have == nil {
		have = []sink.Span{{From: 0, To: part.Size}}
	}
	return e.fill(ctx, a, pending, part.Total, have, resp.Body, rd, part.Validator)
}

// missingSpans is [0, size) less have (sorted and disjoint).
func missingSpans(have []sink.Span, size int64) []sink.Span {
	var out []sink.Span
	var at int64
	for _, h := range have {
		if h.From > at {
			out = append(out, sink.Span{From: at, To: h.From})
		}
		at = max(at, h.To)
	}
	if at < size {
		out = append(out, sink.Span{From: at, To: size})
	}
	return out
}

// fill writes the bytes of pending (size bytes) that have lacks, then
// commits it. body is a response under way with the bytes from the start of
// the first missing span on.
//
// The first connection is measured first (probe). The file is split only
// when that adds throughput at a small cost: a connection that is already
// fast carries it alone, and so does one whose cut would waste more than a
// sliver of the file (closing body early throws away what the server has
// in flight, about its rate times the round trip). Once split, the GET is
// cut after one request's worth of bytes, and every later byte is asked
// for exactly once, in range requests sized to take many round trips, each
// read to its end: a range is never asked for twice. Each stream owns a
// range and fills it from the front; a stream that runs out of work takes
// over the back half of the largest range not yet asked for, in this file
// or, for the extra streams, in whichever split download has the most
// bytes left (see streamPool), so the connections follow the work until
// little remains. Ranges other than the GET are fetched with If-Range on
// validator, and each answer must carry that validator (checkResume), so a
// file that changes meanwhile is noticed instead of stitched together. Each
// stream retries on its own, from the last byte it wrote. pending records
// what was written, not what was handed out, so on failure it keeps
// exactly the bytes that arrived (where the sink can), for the next attempt
// to resume.
func (e *engine) fill(ctx context.Context, a *Artifact, pending sink.Pending, size int64, have []sink.Span, body io.ReadCloser, rd RangeDownloader, validator string) (sink.Info, error) {
	defer pending.Abort()
	missing := missingSpans(have, size)
	if len(missing) == 0 {
		body.Close()
		return pending.Commit(ctx)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The first chunk reads the response already under way: closing it
	// when the transfer ends early makes a Read blocked in it return.
	stopBody := context.AfterFunc(ctx, func() { body.Close() })
	defer stopBody()

	head := &part{first: missing[0].From, last: missing[0].To - 1}
	rate, broken, err := e.probe(body, head, pending, a.firstByte)
	if err != nil {
		return sink.Info{}, err
	}
	d := &ranged{e: e, a: a, w: pending, rd: rd, size: size, validator: validator, ctx: ctx, cancel: cancel}
	var left int64
	for _, m := range missing {
		left += m.To - m.From
	}
	left -= head.done
	if !e.splits(d, rate, a.firstByte, left, broken) {
		// One connection: the rest of the first missing span from body,
		// then each other span with a request of its own.
		spans := []*part{head}
		for _, m := range missing[1:] {
			spans = append(spans, &part{first: m.From, last: m.To - 1})
		}
		for i, p := range spans {
			var b io.ReadCloser
			if i == 0 {
				b = body
			}
			if err := e.fetchPart(ctx, a, p, b, rd, pending, size, validator); err != nil {
				return sink.Info{}, err
			}
		}
		return pending.Commit(ctx)
	}

	// The GET is read up to one request's worth more; the rest of its span
	// and the other missing spans are there for the taking.
	first := &stream{pos: head.first + head.done, end: missing[0].To}
	first.req = min(first.end, first.pos+d.reqSize)
	d.streams = []*stream{first}
	d.spare = missing[1:]
	e.pool.open(d)
	for range e.takeStreams(e.opts.MultiThreadStreams - 1) {
		if !e.pool.join(d) {
			e.giveStreams(1)
		}
	}
	err = d.run(first, body, func(s *stream) bool { return e.pool.takeLocal(d, s) })
	if err != nil {
		d.fail(err)
	}
	e.pool.close(d)
	d.wg.Wait()
	if d.err != nil {
		return sink.Info{}, d.err
	}
	if err := ctx.Err(); err != nil {
		return sink.Info{}, err
	}
	return pending.Commit(ctx)
}

// probeTime is how long the first connection of a multi-stream download is
// measured, at least, before the others join; on a connection with a long
// round trip, four of them, so that its rate has grown to what it will be,
// but no more than maxProbeTime (a slow server's think time is not a round
// trip).
const (
	probeTime    = 100 * time.Millisecond
	maxProbeTime = time.Second
)

// DefaultMultiThreadFastRate is a connection's rate above which a single
// stream is kept: near what hashing and writing take on a small machine, so
// more connections would not make the file arrive sooner.
const DefaultMultiThreadFastRate = 128 << 20 // bytes per second

// probe reads the start of p from body, the GET under way that took rtt to
// answer, for the probe time or until p is done, and returns the
// connection's rate in bytes per second over the second half of that time.
// A read error ends the probe (broken) and is left for fetchPart to meet
// again and retry.
func (e *engine) probe(body io.Reader, p *part, w io.WriterAt, rtt time.Duration) (rate float64, broken bool, err error) {
	window := min(max(probeTime, 4*rtt), maxProbeTime)
	start := time.Now()
	mid, midDone := start, int64(0)
	want := p.last - p.first + 1
	buf := make([]byte, 64<<10)
	for p.done < want && time.Since(start) < window {
		if midDone == 0 && time.Since(start) >= window/2 {
			mid, midDone = time.Now(), max(p.done, 1)
		}
		n, rerr := body.Read(buf[:min(int64(len(buf)), want-p.done)])
		if n > 0 {
			// The body has moved on by n bytes: a failed write fails the
			// transfer, rather than leave bytes out of the file.
			wn, werr := w.WriteAt(buf[:n], p.first+p.done)
			p.done += int64(wn)
			e.opts.Progress.AddBytes(int64(wn))
			if werr != nil {
				return 0, false, werr
			}
		}
		if rerr != nil {
			broken = true
			break
		}
	}
	if midDone == 0 {
		mid = start
	}
	return float64(p.done-midDone) / max(time.Since(mid).Seconds(), 1e-6), broken, nil
}

// cutSlack is what closing a response early throws away besides what is
// in flight on the network: the socket buffers at both ends.
const cutSlack = 64 << 10

// splits decides whether d, with left bytes missing, is fetched over
// several streams, given the rate and round trip of its first connection,
// and sizes its requests. More connections help when one is slow (a
// server or path that caps each connection), and the file is split only
// when the bytes cutting the GET throws away are a sliver of it (nothing,
// when the GET broke during the probe).
func (e *engine) splits(d *ranged, rate float64, rtt time.Duration, left int64, broken bool) bool {
	if e.opts.MultiThreadStreams < 2 || rate >= float64(e.opts.MultiThreadFastRate) {
		return false
	}
	if rate <= 0 {
		rate = 4 << 20 // nothing arrived yet: a guess that sizes requests
	}
	// A request takes many round trips, so that the one spent asking is a
	// small share of its time; and at least a quarter of a second, so that
	// a fast stream does not make a request every few milliseconds.
	d.reqSize = min(max(int64(rate*max(16*rtt, 250*time.Millisecond).Seconds()), 256<<10), 64<<20)
	d.minSteal = d.reqSize / 2
	// What the server has sent past the cut: a round trip's worth in
	// flight, and about as much again waiting in its socket buffer (which
	// grows with the congestion window), all sent as far as it knows.
	waste := int64(2*rate*rtt.Seconds()) + cutSlack
	if broken {
		waste = 0
	}
	return waste*64 <= left && left >= 2*d.reqSize
}

// ranged is one artifact being fetched over several streams.
type ranged struct {
	e         *engine
	a         *Artifact
	w         io.WriterAt
	rd        RangeDownloader
	size      int64
	validator string
	ctx       context.Context
	cancel    context.CancelFunc
	reqSize   int64 // what one range request asks for
	minSteal  int64 // the least a stream takes over from another

	wg stdsync.WaitGroup // the extra streams working on it

	mu      stdsync.Mutex // guards what follows; taken after streamPool.mu
	streams []*stream     // every stream working on it, the first included
	spare   []sink.Span   // missing bytes no stream owns yet
	open    bool          // extra streams may join
	err     error         // the first stream's failure
}

// stream is one connection's share of a ranged download: it owns
// [pos, end), has asked the server for [pos, req) and writes pos onward.
// Only its own goroutine moves pos and req; another stream may move end
// back, never below req, when it takes over the back of the range.
type stream struct {
	pos, req, end int64 // guarded by ranged.mu
}

// left is how many bytes d still lacks. d.mu must be held.
func (d *ranged) left() int64 {
	var n int64
	for _, s := range d.streams {
		n += s.end - s.pos
	}
	for _, sp := range d.spare {
		n += sp.To - sp.From
	}
	return n
}

// victim returns the stream of d with the most bytes not yet asked for, and
// where the back half of them starts, or nil if no stream has minSteal of
// them. d.mu must be held.
func (d *ranged) victim() (*stream, int64) {
	var v *stream
	var at, most int64
	for _, s := range d.streams {
		mid := max(s.req, s.pos+(s.end-s.pos)/2)
		if n := s.end - mid; n >= d.minSteal && n > most {
			v, at, most = s, mid, n
		}
	}
	return v, at
}

// take gives s, out of work, the next work of d: a missing span no one owns,
// or the back half of the largest range not yet asked for. d.mu must be
// held.
func (d *ranged) take(s *stream) bool {
	if len(d.spare) > 0 {
		sp := d.spare[0]
		d.spare = d.spare[1:]
		s.pos, s.req, s.end = sp.From, sp.From, sp.To
		return true
	}
	v, at := d.victim()
	if v == nil {
		return false
	}
	s.pos, s.req, s.end = at, at, v.end
	v.end = at
	return true
}

// hasWork reports whether take would give a stream work. d.mu must be held.
func (d *ranged) hasWork() bool {
	if len(d.spare) > 0 {
		return true
	}
	v, _ := d.victim()
	return v != nil
}

func (d *ranged) fail(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err == nil {
		d.err = err
		d.cancel()
	}
}

// run fills s's range, then as long as more gives it more work, the next.
// body, when not nil, is the GET under way at s.pos; it is read up to s.req
// and then closed.
func (d *ranged) run(s *stream, body io.ReadCloser, more func(*stream) bool) error {
	for {
		for {
			d.mu.Lock()
			if body == nil {
				s.req = min(s.end, s.pos+d.reqSize)
			}
			from, to := s.pos, s.req
			d.mu.Unlock()
			if from >= to {
				break
			}
			if err := d.fetch(s, body, to); err != nil {
				return err
			}
			body = nil
		}
		if body != nil {
			body.Close()
			body = nil
		}
		if d.ctx.Err() != nil || !more(s) {
			return nil
		}
	}
}

// fetch fills s up to to, starting with body when it is not nil, and
// retries on its own with backoff from the last byte written; an attempt
// that wrote bytes renews its budget.
func (d *ranged) fetch(s *stream, body io.ReadCloser, to int64) error {
	e := d.e
	bud := e.newBudget()
	from := s.pos
	for {
		err := d.fetchOnce(s, body, to)
		body = nil
		if err == nil || d.ctx.Err() != nil {
			return err
		}
		var f *fatal
		var r *refusedError
		if errors.As(err, &f) || errors.As(err, &r) || errors.Is(err, errRangesRefused) || !retryable(err) {
			return err
		}
		bud.progress(s.pos - from)
		wait := bud.next(err)
		if wait == backoff.Stop {
			return err
		}
		if err := sleep(d.ctx, wait); err != nil {
			return err
		}
	}
}

// fetchOnce is one attempt of fetch: the bytes from s.pos up to to.
func (d *ranged) fetchOnce(s *stream, body io.ReadCloser, to int64) error {
	e := d.e
	from := s.pos
	if body == nil {
		resp, err := d.rd.DownloadRange(d.ctx, d.a.URL, from, to-1, d.validator)
		if err != nil {
			return downloadError(err)
		}
		if err := checkResume(resp, from, to-1, d.size, d.validator); err != nil {
			resp.Body.Close()
			return &sourceError{fmt.Errorf("%w: %v", errRangesRefused, err)}
		}
		body = resp.Body
	}
	defer body.Close()
	src := &sourceReader{r: io.LimitReader(body, to-from), progress: e.opts.Progress}
	n, err := io.Copy(streamWriter{d, s}, src)
	switch {
	case src.err != nil:
		if d.ctx.Err() != nil {
			return d.ctx.Err()
		}
		return &sourceError{src.err}
	case err != nil: // the destination
		return e.sinkError(err)
	case n < to-from:
		return &sourceError{&cutShort{fmt.Sprintf("the answer for bytes %d-%d ended after %d of them", from, to-1, n)}}
	}
	return nil
}

// streamWriter writes at s's position and moves it on.
type streamWriter struct {
	d *ranged
	s *stream
}

func (w streamWriter) Write(b []byte) (int, error) {
	n, err := w.d.w.WriteAt(b, w.s.pos)
	w.d.mu.Lock()
	w.s.pos += int64(n)
	w.d.mu.Unlock()
	return n, err
}

// streamPool lends the extra streams of the engine (its rangeStreams
// tokens) to the split downloads under way: a stream whose range is done
// goes to the one with the most bytes left, so that no connection idles
// while a large file still has far to go.
type streamPool struct {
	mu        stdsync.Mutex
	downloads map[*ranged]bool
}

// open makes d one the pool's streams may join.
func (p *streamPool) open(d *ranged) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.downloads == nil {
		p.downloads = make(map[*ranged]bool)
	}
	d.mu.Lock()
	d.open = true
	d.mu.Unlock()
	p.downloads[d] = true
}

// close stops streams joining d; those in it finish their ranges.
func (p *streamPool) close(d *ranged) {
	p.mu.Lock()
	defer p.mu.Unlock()
	d.mu.Lock()
	d.open = false
	d.mu.Unlock()
	delete(p.downloads, d)
}

// join starts an extra stream, holding one token, on d if it has work.
func (p *streamPool) join(d *ranged) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := new(stream)
	if !p.enter(d, s) {
		return false
	}
	go p.help(d, s)
	return true
}

// enter adds s to d with work, if d is open, has room and has work. p.mu
// must be held.
func (p *streamPool) enter(d *ranged, s *stream) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.open || d.err != nil || len(d.streams) >= d.e.opts.MultiThreadStreams || !d.take(s) {
		return false
	}
	d.streams = append(d.streams, s)
	d.wg.Add(1)
	return true
}

// leave takes s out of d. p.mu must be held.
func (p *streamPool) leave(d *ranged, s *stream) {
	d.mu.Lock()
	d.streams = slices.DeleteFunc(d.streams, func(o *stream) bool { return o == s })
	d.mu.Unlock()
	d.wg.Done()
}

// takeLocal gives s more work in its own download d (for the first
// stream, which stays with its file).
func (p *streamPool) takeLocal(d *ranged, s *stream) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.take(s)
}

// help runs an extra stream, starting on d, until no split download has
// work for it; then it gives its token back.
func (p *streamPool) help(d *ranged, s *stream) {
	e := d.e
	defer e.giveStreams(1)
	for d != nil {
		if err := d.run(s, nil, func(*stream) bool { return false }); err != nil {
			d.fail(err)
			p.mu.Lock()
			p.leave(d, s)
			p.mu.Unlock()
			return
		}
		d = p.next(d, s)
	}
}

// next moves s, out of work on d, to the open download with the most bytes
// left, d itself included, and returns it; nil if none has work.
func (p *streamPool) next(d *ranged, s *stream) *ranged {
	p.mu.Lock()
	defer p.mu.Unlock()
	var best *ranged
	var most int64 = -1
	for o := range p.downloads {
		o.mu.Lock()
		ok := o.open && o.err == nil && o.ctx.Err() == nil && (o == d || len(o.streams) < o.e.opts.MultiThreadStreams) && o.hasWork()
		if n := o.left(); ok && n > most {
			best, most = o, n
		}
		o.mu.Unlock()
	}
	if best == d {
		d.mu.Lock()
		took := d.take(s)
		d.mu.Unlock()
		if took {
			return d
		}
	}
	p.leave(d, s)
	if best == nil || best == d {
		return nil
	}
	*s = stream{}
	if !p.enter(best, s) {
		return nil
	}
	return best
}

// timeFirstByte returns ctx with a trace of the requests made with it, and
// a function that reports the round trip the last of them saw: the time its
// TCP handshake took if it dialed (one round trip, as curl's time_connect),
// else the time from the request sent to the first byte of its answer
// (which adds the server's think time).
func timeFirstByte(ctx context.Context) (context.Context, func() time.Duration) {
	var dial, connected, wrote, took atomic.Int64
	trace := &httptrace.ClientTrace{
		GetConn:      func(string) { connected.Store(0) },
		ConnectStart: func(string, string) { dial.Store(time.Now().UnixNano()) },
		ConnectDone: func(_, _ string, err error) {
			if err == nil {
				connected.Store(max(time.Now().UnixNano()-dial.Load(), 1))
			}
		},
		WroteRequest: func(httptrace.WroteRequestInfo) { wrote.Store(time.Now().UnixNano()) },
		GotFirstResponseByte: func() {
			if w := wrote.Load(); w != 0 {
				took.Store(time.Now().UnixNano() - w)
			}
		},
	}
	return httptrace.WithClientTrace(ctx, trace), func() time.Duration {
		if c := connected.Load(); c > 0 {
			return time.Duration(c)
		}
		return time.Duration(took.Load())
	}
}

// takeStreams takes up to n extra range connections from the shared budget,
// without waiting, and returns how many it got.
func (e *engine) takeStreams(n int) int {
	for i := range n {
		select {
		case e.rangeStreams <- struct{}{}:
		default:
			return i
		}
	}
	return n
}

func (e *engine) giveStreams(n int) {
	for range n {
		<-e.rangeStreams
	}
}

// fetchPart fills one range of an artifact of size bytes, starting with
// body when it is not nil, and retries on its own with backoff from the last
// byte written; an attempt that wrote bytes renews its budget.
func (e *engine) fetchPart(ctx context.Context, a *Artifact, p *part, body io.ReadCloser, rd RangeDownloader, w io.WriterAt, size int64, validator string) error {
	bud := e.newBudget()
	for {
		err := e.fetchPartOnce(ctx, a, p, body, rd, w, size, validator)
		body = nil
		if err == nil || ctx.Err() != nil {
			return err
		}
		var f *fatal
		var r *refusedError
		if errors.As(err, &f) || errors.As(err, &r) || errors.Is(err, errRangesRefused) || !retryable(err) {
			return err
		}
		bud.progress(p.done)
		wait := bud.next(err)
		if wait == backoff.Stop {
			return err
		}
		if err := sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// fetchPartOnce is one attempt of fetchPart.
func (e *engine) fetchPartOnce(ctx context.Context, a *Artifact, p *part, body io.ReadCloser, rd RangeDownloader, w io.WriterAt, size int64, validator string) error {
	if body == nil {
		from := p.first + p.done
		resp, err := rd.DownloadRange(ctx, a.URL, from, p.last, validator)
		if err != nil {
			return downloadError(err)
		}
		if err := checkResume(resp, from, p.last, size, validator); err != nil {
			resp.Body.Close()
			return &sourceError{fmt.Errorf("%w: %v", errRangesRefused, err)}
		}
		body = resp.Body
	}
	defer body.Close()
	want := p.last - p.first + 1 - p.done
	src := &sourceReader{r: io.LimitReader(body, want), progress: e.opts.Progress}
	n, err := io.Copy(io.NewOffsetWriter(w, p.first+p.done), src)
	p.done += n
	switch {
	case src.err != nil:
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &sourceError{src.err}
	case err != nil: // the destination
		return e.sinkError(err)
	case n < want:
		return &sourceError{&cutShort{fmt.Sprintf("the answer for bytes %d-%d ended after %d of them", p.first+p.done-n, p.last, n)}}
	}
	return nil
}
