package sync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
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
// the first missing span on. The missing spans are cut into chunks that the
// streams take in order, each the next one not yet taken, so the file fills
// from the front (the sink hashes and flushes its written prefix as it
// grows) and a slow connection delays only its own chunk. Chunks other than
// the first are fetched with If-Range on validator, and each answer must
// carry that validator (checkResume), so a file that changes meanwhile is
// noticed instead of stitched together, even through a proxy that ignores
// If-Range. Each chunk is retried on its own, from where it stopped. On
// failure pending keeps what was written (where the sink can), for the next
// attempt to resume.
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

	// Measure the connection first: one that is already fast needs no
	// help, and more streams would only cost CPU and requests.
	head := &part{first: missing[0].From, last: missing[0].To - 1}
	fast, err := e.probe(body, head, pending)
	if err != nil {
		return sink.Info{}, err
	}
	chunk := chunkSize(size, e.opts.MultiThreadStreams)
	var parts []*part
	for i, m := range missing {
		from := m.From
		if i == 0 {
			// The probed bytes and a chunk more stay with the first.
			from = min(m.To, m.From+head.done+chunk)
			parts = append(parts, &part{first: m.From, last: from - 1, done: head.done})
		}
		for ; from < m.To; from += chunk {
			parts = append(parts, &part{first: from, last: min(m.To, from+chunk) - 1})
		}
	}
	streams := min(int64(e.opts.MultiThreadStreams), int64(len(parts)))
	if !fast && streams > 1 {
		// The streams beyond the first come from a budget all transfers
		// share (as many as -j), so many large files at once do not open
		// -j × streams connections; a file that finds none left goes on
		// alone.
		helpers := e.takeStreams(int(streams - 1))
		defer e.giveStreams(helpers)
		streams = 1 + int64(helpers)
	}
	if fast || streams == 1 {
		// One connection: the rest of the first missing span from body,
		// then each other span with a request of its own.
		head.last = missing[0].To - 1
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

	var next atomic.Int64
	next.Store(streams) // stream i starts with part i
	var wg stdsync.WaitGroup
	var mu stdsync.Mutex
	var firstErr error
	for i := range streams {
		var b io.ReadCloser
		if i == 0 {
			b = body
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := i; c < int64(len(parts)) && ctx.Err() == nil; c = next.Add(1) - 1 {
				err := e.fetchPart(ctx, a, parts[c], b, rd, pending, size, validator)
				b = nil
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
						cancel()
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return sink.Info{}, firstErr
	}
	if err := ctx.Err(); err != nil {
		return sink.Info{}, err
	}
	return pending.Commit(ctx)
}

// probeTime is how long the first connection of a multi-stream download is
// measured before the others join.
const probeTime = 100 * time.Millisecond

// DefaultMultiThreadFastRate is a connection's rate above which a single
// stream is kept: near what hashing and writing take on a small machine, so
// more connections would not make the file arrive sooner.
const DefaultMultiThreadFastRate = 128 << 20 // bytes per second

// probe reads the start of p from body, the GET already under way, for
// probeTime or until p is done, and reports whether the connection is fast
// enough to carry the whole file alone. A read error is left for fetchPart
// to meet again and retry.
func (e *engine) probe(body io.Reader, p *part, w io.WriterAt) (fast bool, err error) {
	start := time.Now()
	want := p.last - p.first + 1
	buf := make([]byte, 64<<10)
	for p.done < want && time.Since(start) < probeTime {
		n, rerr := body.Read(buf[:min(int64(len(buf)), want-p.done)])
		if n > 0 {
			// The body has moved on by n bytes: a failed write fails the
			// transfer, rather than leave bytes out of the file.
			wn, werr := w.WriteAt(buf[:n], p.first+p.done)
			p.done += int64(wn)
			e.opts.Progress.AddBytes(int64(wn))
			if werr != nil {
				return false, werr
			}
		}
		if rerr != nil {
			return false, nil
		}
	}
	return float64(p.done)/max(time.Since(start).Seconds(), 1e-6) >= float64(e.opts.MultiThreadFastRate), nil
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

// chunkSize cuts size bytes for streams connections: about eight chunks per
// stream, so that the streams stay near the front of the file together,
// between 1 MiB (not too many requests) and 64 MiB.
func chunkSize(size int64, streams int) int64 {
	return min(max(size/int64(streams*8), 1<<20), 64<<20)
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
