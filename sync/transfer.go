package sync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	stdsync "sync"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/artifact-sync/artifact-sync/circleci"
	"github.com/artifact-sync/artifact-sync/manifest"
	"github.com/artifact-sync/artifact-sync/sink"
)

// DefaultMaxStall is how long one artifact may go on failing without any
// of its bytes being kept before it counts as failed, however its attempts
// are spent.
const DefaultMaxStall = 10 * time.Minute

// DefaultMaxArtifactSize bounds the size a download may declare: well above
// CircleCI's 3 GB limit for one artifact, far below what would overflow a
// computation or make a sink reserve absurd buffers.
const DefaultMaxArtifactSize = 64 << 30

// budget bounds the attempts of one artifact (or one range of it): Retries
// attempts in a row that kept nothing new, or MaxStall without minProgress
// more bytes kept. An attempt that kept any byte more renews the attempts,
// so a connection cut every few KiB slows a download but never fails it;
// only the clock of MaxStall asks for minProgress.
type budget struct {
	b        backoff.BackOff
	max      int
	left     int
	maxStall time.Duration
	since    time.Time // last progress by minProgress, or the start
	best     int64     // the most bytes kept so far
	sinceAt  int64     // best when since was last set
	refused  int       // storage refusals (401/403/404/410) met
}

func (e *engine) newBudget() *budget {
	return &budget{b: e.newBackOff(), max: e.opts.Retries, left: e.opts.Retries, maxStall: e.opts.MaxStall, since: time.Now()}
}

// minProgress is how much further the kept bytes must have moved to
// restart the clock of MaxStall: a server that trickles a few bytes before
// each stall does not keep an artifact going for ever.
const minProgress = 1 << 20

// progress notes that kept bytes are now kept: any byte more than ever
// before renews the attempts (and the backoff starts again from its first
// wait); minProgress more restarts the clock of MaxStall too.
func (x *budget) progress(kept int64) {
	if kept <= x.best {
		return
	}
	x.best = kept
	x.left = x.max
	x.b.Reset()
	if kept >= x.sinceAt+minProgress {
		x.sinceAt = kept
		x.since = time.Now()
	}
}

// next spends one attempt on err and returns the wait before the next one,
// or backoff.Stop when the budget is spent.
func (x *budget) next(err error) time.Duration {
	x.left--
	if x.left <= 0 || time.Since(x.since) > x.maxStall {
		return backoff.Stop
	}
	d := x.b.NextBackOff()
	if d == backoff.Stop {
		return d
	}
	if ra := circleci.RetryAfter(err); ra > d {
		d = min(ra, 5*time.Minute)
	}
	return d
}

// newBackOff is the wait between attempts.
func (e *engine) newBackOff() backoff.BackOff {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     e.opts.RetryInitial,
		RandomizationFactor: 0.3,
		Multiplier:          2,
		MaxInterval:         e.opts.RetryMax,
		Stop:                backoff.Stop,
		Clock:               backoff.SystemClock,
	}
	b.Reset()
	return b
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// transfer moves one artifact, retrying the whole GET -> sink unit; each
// attempt resumes from what the ones before it kept.
func (e *engine) transfer(ctx context.Context, a *Artifact) error {
	if r, ok := e.dest.(sink.Resumer); ok && e.opts.Force {
		// --force redoes the artifact from scratch.
		if err := r.DiscardPartial(ctx, a.Key); err != nil {
			return e.sinkError(err)
		}
	}
	a.looked = false // a transfer again (see writeAgain) counts afresh
	bud := e.newBudget()
	for attempt := 1; ; attempt++ {
		err := e.attempt(ctx, a)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var f *fatal
		if errors.As(err, &f) {
			return err
		}
		var r *refusedError
		if errors.As(err, &r) {
			// A presigned URL expires: one fresh request to the
			// artifact URL, then the refusal stands.
			if bud.refused++; bud.refused > 1 {
				return err
			}
		} else if !retryable(err) {
			return err
		}
		bud.progress(e.kept(ctx, a))
		wait := bud.next(err)
		if wait == backoff.Stop {
			if attempt > 1 {
				err = fmt.Errorf("after %d attempts: %w", attempt, err)
			}
			var se *sourceError
			if a.resumed && !errors.As(err, &se) {
				// The destination kept failing to continue what it
				// kept: drop it, so that the next run starts this
				// artifact afresh instead of failing the same way.
				if r, ok := e.dest.(sink.Resumer); ok {
					_ = r.DiscardPartial(context.WithoutCancel(ctx), a.Key)
				}
			}
			return err
		}
		e.log.Debug("transfer attempt failed", "job", a.JobNumber, "node", a.NodeIndex, "path", a.Path, "attempt", attempt, "error", err)
		if err := sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// kept is how many bytes of a the destination keeps for a resume.
func (e *engine) kept(ctx context.Context, a *Artifact) int64 {
	r, ok := e.dest.(sink.Resumer)
	if !ok {
		return 0
	}
	p, err := r.Partial(ctx, a.Key)
	if err != nil || !resumable(p) {
		return 0
	}
	return keptBytes(p)
}

// keptBytes counts the bytes p holds.
func keptBytes(p sink.PartialInfo) int64 {
	if p.Spans == nil {
		return p.Size
	}
	var n int64
	for _, s := range p.Spans {
		n += s.To - s.From
	}
	return n
}

// resumable reports whether the kept bytes p describes can be proven to be
// part of the artifact's current version: they were written from a source
// with a validator (sent back as If-Range, so a changed artifact answers
// 200 in full) and a known total that the resumed answer must repeat.
func resumable(p sink.PartialInfo) bool {
	return p.Validator != "" && p.Total > 0 && keptBytes(p) > 0 && p.Size <= p.Total
}

// sourceValidator is what identifies the version of a download for If-Range:
// its ETag if strong, else its Last-Modified date; "" if neither.
func sourceValidator(resp *http.Response) string {
	if etag := resp.Header.Get("ETag"); etag != "" && !strings.HasPrefix(etag, "W/") {
		return etag
	}
	return resp.Header.Get("Last-Modified")
}

// attempt is one GET of the artifact streamed into the sink, resuming what
// earlier attempts or runs kept when that is provably the same version.
func (e *engine) attempt(ctx context.Context, a *Artifact) error {
	resumer, _ := e.dest.(sink.Resumer)
	var part sink.PartialInfo
	if resumer != nil {
		p, err := resumer.Partial(ctx, a.Key)
		if err != nil {
			return e.sinkError(err)
		}
		switch {
		case resumable(p):
			part = p
		case keptBytes(p) > 0 || p.Validator != "":
			if err := resumer.DiscardPartial(ctx, a.Key); err != nil {
				return e.sinkError(err)
			}
		}
	}
	select {
	case e.downloads <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	a.noteKept(keptBytes(part))
	done := stdsync.OnceFunc(func() { <-e.downloads })
	defer done()

	// A resume asks for at least the last byte, so that the answer always
	// carries a Content-Range with the total to check, even when every byte
	// is kept (then the object is completed from what is kept, and that
	// byte is not used).
	var off int64 = -1
	var resp *http.Response
	var err error
	ctx, firstByte := timeFirstByte(ctx)
	if part.Total > 0 {
		off = min(part.Size, part.Total-1)
		if rd, ok := e.dl.(RangeDownloader); ok {
			resp, err = rd.DownloadRange(ctx, a.URL, off, part.Total-1, part.Validator)
		} else if off > 0 {
			resp, err = e.dl.Download(ctx, a.URL, off, part.Validator)
		} else {
			off = -1
		}
	}
	if off < 0 {
		resp, err = e.dl.Download(ctx, a.URL, 0, "")
	}
	if err != nil {
		e.opts.Progress.Size(a.Key, 0) // nothing comes from this attempt
		if off >= 0 && hasStatus(err, http.StatusRequestedRangeNotSatisfiable) {
			return e.startOver(ctx, a, "the kept bytes are past the artifact's end (416)")
		}
		return downloadError(err)
	}
	defer resp.Body.Close()
	a.firstByte = firstByte()
	e.opts.Progress.Size(a.Key, resp.ContentLength)

	src := &sourceReader{r: resp.Body, progress: e.opts.Progress, done: done}
	defer func() {
		if r, ok := src.r.(*reopener); ok {
			r.Close()
		}
	}()
	var info sink.Info
	a.resumed = false
	switch {
	case off >= 0 && resp.StatusCode == http.StatusPartialContent:
		a.resumed = true
		if err := checkResume(resp, off, part.Total-1, part.Total, part.Validator); err != nil {
			return e.startOver(ctx, a, "the answer to a resume does not continue the kept bytes: "+err.Error())
		}
		opts := sink.PutOptions{Size: part.Total, Metadata: metadata(a), Validator: part.Validator}
		e.log.Debug("resuming", "job", a.JobNumber, "node", a.NodeIndex, "path", a.Path, "bytes", keptBytes(part))
		switch rr, rd, ok := e.rangeResume(a, part.Total); {
		case part.Size == part.Total:
			// Every byte is kept, and the answer proved them the same
			// version: complete the object with nothing more (the sink
			// may resume only where its kept bytes end, e.g. at an S3
			// part boundary).
			info, err = resumer.PutFrom(ctx, a.Key, part.Total, strings.NewReader(""), opts)
		case ok:
			info, err = e.resumeRanges(ctx, a, resp, rr, rd, part, opts)
		default:
			src.r = e.newReopener(ctx, a, resp.Body, off, part.Total, part.Validator)
			info, err = resumer.PutFrom(ctx, a.Key, off, src, opts)
		}
	case resp.StatusCode == http.StatusPartialContent:
		return &sourceError{fmt.Errorf("the server answered a request for the whole file with a range (%q)", resp.Header.Get("Content-Range"))}
	case resp.StatusCode == http.StatusOK:
		if off >= 0 {
			// If-Range no longer matches: a new version, in full.
			e.log.Debug("artifact changed since its bytes were kept; starting over", "job", a.JobNumber, "node", a.NodeIndex, "path", a.Path)
			a.noteKept(0)
			if err := resumer.DiscardPartial(ctx, a.Key); err != nil {
				return e.sinkError(err)
			}
		}
		if resp.ContentLength > e.opts.MaxArtifactSize {
			return &fatalArtifact{fmt.Errorf("the download declares %d bytes, more than --max-artifact-size %d", resp.ContentLength, e.opts.MaxArtifactSize)}
		}
		opts := sink.PutOptions{Size: resp.ContentLength, Metadata: metadata(a), Validator: sourceValidator(resp)}
		if resp.ContentLength < 0 {
			src.r = &capReader{r: resp.Body, left: e.opts.MaxArtifactSize, limit: e.opts.MaxArtifactSize}
		} else {
			src.r = e.newReopener(ctx, a, resp.Body, 0, resp.ContentLength, opts.Validator)
		}
		if rw, rd, ok := e.multiStream(a, resp); ok {
			info, err = e.fetchRanges(ctx, a, resp, rw, rd, opts)
		} else {
			info, err = e.dest.Put(ctx, a.Key, src, opts)
		}
	default:
		return &sourceError{fmt.Errorf("unexpected answer %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))}
	}
	if err != nil {
		if errors.Is(err, errRangesRefused) {
			a.noRanges = true
			if resumer != nil {
				_ = resumer.DiscardPartial(ctx, a.Key)
			}
			e.log.Debug("ranges refused; fetching over one connection", "job", a.JobNumber, "node", a.NodeIndex, "path", a.Path, "error", err)
			return &sourceError{&cutShort{err.Error() + "; fetching it over one connection"}}
		}
		var big *tooLargeError
		if errors.As(src.err, &big) {
			// Nothing of it is worth keeping: the next run starts over.
			if resumer != nil {
				if err := resumer.DiscardPartial(ctx, a.Key); err != nil {
					return e.sinkError(err)
				}
			}
			return &fatalArtifact{big}
		}
		if src.err != nil {
			return &sourceError{src.err}
		}
		return e.sinkError(err)
	}
	if err := e.commits.record(ctx, a, manifest.Entry{
		ID: manifestID(a), Key: a.Key, Size: info.Size, SHA256: info.SHA256,
		ETag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified"),
	}); err != nil {
		if errors.As(err, new(*fatalArtifact)) {
			return err
		}
		return &fatal{err}
	}
	e.mu.Lock()
	e.sum.Transferred++
	e.sum.Bytes += a.newBytes(info.Size)
	e.mu.Unlock()
	return nil
}

// startOver drops the kept bytes of a, which cannot be resumed, and asks
// for another attempt from the start.
func (e *engine) startOver(ctx context.Context, a *Artifact, why string) error {
	if r, ok := e.dest.(sink.Resumer); ok {
		if err := r.DiscardPartial(ctx, a.Key); err != nil {
			return e.sinkError(err)
		}
	}
	e.log.Debug("cannot resume; starting over", "job", a.JobNumber, "node", a.NodeIndex, "path", a.Path, "why", why)
	return &sourceError{&cutShort{why + "; starting over"}}
}

// sinkError classifies an error of the destination: permanent ones (a full
// or read-only disk, a missing bucket) stop the run.
func (e *engine) sinkError(err error) error {
	var fe *sink.FlushError
	if errors.As(err, &fe) && e.disk != nil {
		lost := e.disk.putFailed(fe)
		if !sink.IsPermanent(err) {
			return lost
		}
	}
	switch {
	case errors.Is(err, sink.ErrPathConflict):
		// A link or a file in this key's way: that artifact fails alone.
		return &fatalArtifact{err}
	case sink.IsPermanent(err):
		return &fatal{err}
	}
	return err
}

// hasStatus reports whether err is an answer with status code.
func hasStatus(err error, code int) bool {
	var ae *circleci.Error
	return errors.As(err, &ae) && ae.StatusCode == code
}

// downloadError classifies the error of a download request. Refusals by
// the artifact or storage host (401, 403, 404, 410) concern that artifact
// only: a presigned URL may have expired or an object be missing.
func downloadError(err error) error {
	var ae *circleci.Error
	if errors.As(err, &ae) {
		switch ae.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusGone:
			return &refusedError{err}
		}
	}
	return &sourceError{err}
}

// sourceError marks a failure on the CircleCI side of a transfer.
type sourceError struct{ err error }

func (s *sourceError) Error() string { return s.err.Error() }
func (s *sourceError) Unwrap() error { return s.err }

// refusedError is a download the artifact or storage host refused.
type refusedError struct{ err error }

func (r *refusedError) Error() string { return "download refused: " + r.err.Error() }
func (r *refusedError) Unwrap() error { return r.err }

// fatalArtifact fails its artifact at once, without more attempts.
type fatalArtifact struct{ err error }

func (f *fatalArtifact) Error() string { return f.err.Error() }
func (f *fatalArtifact) Unwrap() error { return f.err }

// cutShort is a download that ended before it was done, or must be done
// again, for a reason its message gives: worth another attempt, like an
// early EOF.
type cutShort struct{ msg string }

func (c *cutShort) Error() string { return c.msg }
func (c *cutShort) Unwrap() error { return io.ErrUnexpectedEOF }

// fatal marks errors that stop the whole run rather than one artifact.
type fatal struct{ err error }

func (f *fatal) Error() string { return f.err.Error() }
func (f *fatal) Unwrap() error { return f.err }

func retryable(err error) bool {
	var fa *fatalArtifact
	if errors.As(err, &fa) {
		return false
	}
	var se *sourceError
	if errors.As(err, &se) {
		return circleci.IsRetryable(se.err) || errors.Is(se.err, io.ErrUnexpectedEOF)
	}
	if errors.Is(err, sink.ErrPathConflict) {
		return false
	}
	// A sink error that is not permanent (a network hiccup to S3, a short
	// stream) is worth another attempt.
	return !sink.IsPermanent(err)
}

// sourceReader remembers the download's own read error, so a failed Put can
// be blamed on the right side, and counts bytes for progress.
type sourceReader struct {
	r        io.Reader
	err      error
	progress Progress
	done     func() // called once the body has ended, however it ended
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.progress.AddBytes(int64(n))
	}
	if err != nil {
		if err != io.EOF {
			s.err = err
		}
		if s.done != nil {
			s.done()
		}
	}
	return n, err
}

// contentRange is a parsed Content-Range "bytes first-last/total".
type contentRange struct{ first, last, total int64 }

// parseContentRange parses a Content-Range of a 206 answer. It refuses an
// unknown total ("*"), a range outside the total and numbers that do not
// fit in an int64.
func parseContentRange(s string) (contentRange, bool) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(s), "bytes ")
	if !ok {
		return contentRange{}, false
	}
	rng, total, ok := strings.Cut(rest, "/")
	if !ok {
		return contentRange{}, false
	}
	first, last, ok := strings.Cut(rng, "-")
	if !ok {
		return contentRange{}, false
	}
	var cr contentRange
	for _, f := range []struct {
		s string
		v *int64
	}{{first, &cr.first}, {last, &cr.last}, {total, &cr.total}} {
		if f.s == "" || strings.TrimLeft(f.s, "0123456789") != "" {
			return contentRange{}, false
		}
		n, err := strconv.ParseInt(f.s, 10, 64)
		if err != nil {
			return contentRange{}, false
		}
		*f.v = n
	}
	if cr.first > cr.last || cr.last >= cr.total {
		return contentRange{}, false
	}
	return cr, true
}
