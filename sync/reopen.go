package sync

import (
	"context"
	"io"
	"net/http"

	"github.com/cenkalti/backoff/v4"
)

// reopener is the body of a single-stream download that outlives its
// connection. When the body breaks with an error worth another attempt (a
// reset, an early end), it asks for the rest with a ranged request, If-Range
// on the version's validator and proven by checkResume, and reads on from
// the next byte. The sink's write never sees the break: its open file and
// running SHA-256, or its multipart upload and the part it is filling, go
// on as if nothing happened, so a retry within a run starts from the last
// byte received, not from the last durable checkpoint (which only matters
// to a later run, after a crash). Where the rest cannot be had that way
// (the request fails, the answer is not the same version, the budget is
// spent) it returns the break, and the transfer's own attempts take over
// from what the sink kept.
//
// As rclone's ReOpen (fs/operations/reopen.go) does for a copy's source.
type reopener struct {
	e         *engine
	ctx       context.Context
	a         *Artifact
	body      io.ReadCloser
	at        int64  // offset of the next byte body gives
	total     int64  // the artifact's size
	validator string // sent as If-Range and checked in every answer
	start     int64  // at when the reopener began
	from      int64  // at when body was opened
	err       error  // the break being handled, if any
	gaveUp    bool   // err stands: it is returned from now on
	bud       *budget
}

// newReopener returns a reader of body, the bytes of a from off on, which
// reopens it on a break; it returns body itself where nothing could prove
// a reopened answer to be of the same version (no validator, no total) or
// ranges are known not to work.
func (e *engine) newReopener(ctx context.Context, a *Artifact, body io.ReadCloser, off, total int64, validator string) io.Reader {
	if validator == "" || total <= 0 || off >= total || a.noRanges {
		return body
	}
	return &reopener{e: e, ctx: ctx, a: a, body: body, at: off, total: total, validator: validator, start: off, from: off}
}

func (r *reopener) Read(p []byte) (int, error) {
	for {
		if r.err == nil {
			n, err := r.body.Read(p)
			r.at += int64(n)
			if err == io.EOF && r.at < r.total {
				err = io.ErrUnexpectedEOF
			}
			if err == nil || err == io.EOF {
				return n, err
			}
			r.err = err
			if n > 0 {
				return n, nil // the break is handled at the next Read
			}
		}
		if r.gaveUp || !r.reopen() {
			r.gaveUp = true
			return 0, r.err
		}
	}
}

// reopen replaces the broken body with an answer for the rest of the
// artifact, and reports whether it did.
func (r *reopener) reopen() bool {
	if r.ctx.Err() != nil || !retryable(&sourceError{r.err}) {
		return false
	}
	if r.bud == nil {
		r.bud = r.e.newBudget()
	}
	r.bud.progress(r.at - r.start)
	wait := r.bud.next(r.err)
	if wait == backoff.Stop {
		return false
	}
	if r.at-r.from >= minProgress {
		// A connection that carried a MiB before it broke is not a server
		// in trouble: the next one is asked for at once.
		wait = 0
	}
	a := r.a
	r.e.log.Debug("download broke; asking for the rest", "job", a.JobNumber, "node", a.NodeIndex, "path", a.Path, "bytes", r.at, "error", r.err)
	if err := sleep(r.ctx, wait); err != nil {
		return false
	}
	var resp *http.Response
	var err error
	if rd, ok := r.e.dl.(RangeDownloader); ok {
		resp, err = rd.DownloadRange(r.ctx, a.URL, r.at, r.total-1, r.validator)
	} else {
		resp, err = r.e.dl.Download(r.ctx, a.URL, r.at, r.validator)
	}
	if err != nil {
		// The transfer's next attempt asks again and judges the error
		// (a presigned URL that expired, a host that is down).
		r.e.log.Debug("asking for the rest failed", "job", a.JobNumber, "node", a.NodeIndex, "path", a.Path, "error", err)
		return false
	}
	if err := checkResume(resp, r.at, r.total-1, r.total, r.validator); err != nil {
		resp.Body.Close()
		r.e.log.Debug("the rest does not continue the download", "job", a.JobNumber, "node", a.NodeIndex, "path", a.Path, "error", err)
		return false
	}
	r.body.Close()
	r.body, r.from, r.err = resp.Body, r.at, nil
	return true
}

// Close closes the body being read.
func (r *reopener) Close() error { return r.body.Close() }
