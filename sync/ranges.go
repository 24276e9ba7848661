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

	"github.com/artifact-sync/artifact-sync/circleci"
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

// errRangesRefused says a range request was answered with something else:
// the server ignores ranges after all, or the file changed (If-Range). The
// artifact is then fetched again over one connection.
var errRangesRefused = errors.New("range request refused")

// part is one range of a multi-stream download.
type part struct {
	first, last int64 // inclusive
	done        int64 // bytes written so far
}

// fetchRanges downloads a of size bytes into a pending object over several
// connections. The file is cut into chunks that the streams take in order,
// each the next one not yet taken, so the file fills from the front (the
// sink hashes and flushes its written prefix as it grows) and a slow
// connection delays only its own chunk. The first chunk is read from resp,
// the GET already under way; the others are fetched with If-Range on the
// response's ETag, so a file that changes meanwhile is noticed instead of
// stitched together. Each chunk is retried on its own, from where it
// stopped.
func (e *engine) fetchRanges(ctx context.Context, a *Artifact, resp *http.Response, rw sink.RangeWriter, rd RangeDownloader, opts sink.PutOptions) (sink.Info, error) {
	size := resp.ContentLength
	pending, err := rw.Create(ctx, a.Key, size, opts)
	if err != nil {
		return sink.Info{}, err
	}
	defer pending.Abort()

	chunk := chunkSize(size, e.opts.MultiThreadStreams)
	chunks := (size + chunk - 1) / chunk
	streams := min(int64(e.opts.MultiThreadStreams), chunks)
	validator := resp.Header.Get("ETag")
	if validator == "" {
		validator = resp.Header.Get("Last-Modified")
	}

	// Measure the connection first: one that is already fast needs no
	// help, and more streams would only cost CPU and requests.
	first := &part{first: 0, last: chunk - 1}
	fast, err := e.probe(resp.Body, first, pending)
	if err != nil {
		return sink.Info{}, err
	}
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
		first.last = size - 1
		if err := e.fetchPart(ctx, a, first, resp.Body, rd, pending, validator); err != nil {
			return sink.Info{}, err
		}
		return pending.Commit(ctx)
	}

	var next atomic.Int64
	next.Store(streams) // stream i starts with chunk i
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg stdsync.WaitGroup
	var mu stdsync.Mutex
	var firstErr error
	for i := range streams {
		var body io.ReadCloser
		if i == 0 {
			body = resp.Body
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := i; c < chunks && ctx.Err() == nil; c = next.Add(1) - 1 {
				p := &part{first: c * chunk, last: min(size, (c+1)*chunk) - 1}
				if c == 0 {
					p = first
				}
				err := e.fetchPart(ctx, a, p, body, rd, pending, validator)
				body = nil
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

// fetchPart fills one range, starting with body when it is not nil, and
// retries on its own with backoff from the last byte written.
func (e *engine) fetchPart(ctx context.Context, a *Artifact, p *part, body io.ReadCloser, rd RangeDownloader, w io.WriterAt, validator string) error {
	b := backoff.WithContext(backoff.WithMaxRetries(e.newBackOff(), uint64(e.opts.Retries-1)), ctx)
	op := func() error {
		if body == nil {
			resp, err := rd.DownloadRange(ctx, a.URL, p.first+p.done, p.last, validator)
			if err != nil {
				if errors.Is(err, circleci.ErrUnauthorized) || errors.Is(err, circleci.ErrForbidden) {
					return backoff.Permanent(&fatal{err})
				}
				if !circleci.IsRetryable(err) {
					return backoff.Permanent(&sourceError{err})
				}
				return &sourceError{err}
			}
			if resp.StatusCode != http.StatusPartialContent || rangeStart(resp) != p.first+p.done {
				resp.Body.Close()
				return backoff.Permanent(&sourceError{fmt.Errorf("%w: asked for bytes %d-%d, got %d %q",
					errRangesRefused, p.first+p.done, p.last, resp.StatusCode, resp.Header.Get("Content-Range"))})
			}
			body = resp.Body
		}
		defer func() { body.Close(); body = nil }()
		want := p.last - p.first + 1 - p.done
		src := &sourceReader{r: io.LimitReader(body, want), progress: e.opts.Progress}
		n, err := io.Copy(io.NewOffsetWriter(w, p.first+p.done), src)
		p.done += n
		switch {
		case src.err != nil:
			if circleci.IsRetryable(src.err) || errors.Is(src.err, io.ErrUnexpectedEOF) {
				return &sourceError{src.err}
			}
			return backoff.Permanent(&sourceError{src.err})
		case err != nil: // the destination
			if sink.IsPermanent(err) {
				return backoff.Permanent(&fatal{err})
			}
			return err
		case n < want:
			return &sourceError{io.ErrUnexpectedEOF}
		}
		return nil
	}
	return backoff.Retry(op, b)
}
