package sink

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// precondition is what a conditional write requires of the object it
// replaces: the version with ETag ifMatch, or, with create, none at all.
// The zero value requires nothing.
type precondition struct {
	ifMatch string
	create  bool
	bare    bool // send ifMatch unquoted (condWrites.bareETag)
}

func (p precondition) set() bool { return p.ifMatch != "" || p.create }

// headers are p's If-Match and If-None-Match.
func (p precondition) headers() (ifMatch, ifNoneMatch *string) {
	switch {
	case p.ifMatch != "" && p.bare:
		return aws.String(unquote(p.ifMatch)), nil
	case p.ifMatch != "":
		return aws.String(p.ifMatch), nil
	case p.create:
		return nil, aws.String("*")
	}
	return nil, nil
}

// FencedOpen reads key (relative to the sink's prefix), noting the ETag
// of the version it read, or that there is none, for FencedPut.
func (l *s3Lease) FencedOpen(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := ValidKey(key); err != nil {
		return nil, err
	}
	out, err := l.s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(l.s.bucket), Key: aws.String(l.s.full(key))})
	if status(err) == http.StatusNotFound {
		l.note(key, "")
	}
	if err != nil {
		return nil, l.s.classify("open", key, err)
	}
	l.note(key, aws.ToString(out.ETag))
	return out.Body, nil
}

// FencedPut writes key (relative to the sink's prefix) from r, of size
// bytes or -1 if unknown, as the holder of this lease: the write is
// conditional on the object being the version this lease last read or
// wrote (If-Match on its ETag), or, where it saw none, on there being none
// (If-None-Match: *). So a write that reaches the server after another run
// took the lease over and wrote the object fails (412) instead of
// replacing the other run's version: the condition is checked by the
// server on the object itself, with no window between a check and the
// write, however long the write was held up (a paused process, a network
// partition). On a 412 it asks the lease: if another run holds it, the
// error is a LostLockError. If this run still holds it, the object was
// changed by a write of a run whose lease had run out before this one took
// it, or by this very write sent twice by the SDK after a lost reply; the
// version there is then replaced (If-Match on it) when r can be read
// again, as the holder's record is the one that counts.
//
// A new object (a manifest journal) has no earlier version to condition
// on: If-None-Match: * only keeps it from replacing one. Such writes are
// fenced by Confirm alone, which leaves a window of one write's time.
func (l *s3Lease) FencedPut(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	if err := l.Confirm(ctx); err != nil {
		return err
	}
	seeker, _ := r.(io.Seeker)
	var start int64
	if seeker != nil {
		start, _ = seeker.Seek(0, io.SeekCurrent)
	}
	cond := l.condition(key)
	_, etag, err := l.s.put(ctx, key, r, PutOptions{Size: size}, cond)
	if preconditionFailed(err) {
		if lerr := l.confirmNow(ctx); lerr != nil {
			return lerr
		}
		if seeker == nil {
			return &s3Error{msg: fmt.Sprintf("put %s: the object was changed by another writer while this run held the lock; it was left as it is, and the next run writes it again", l.s.url(key)),
				errs: []error{err}}
		}
		cond, err = l.current(ctx, key)
		if err != nil {
			return err
		}
		if _, err := seeker.Seek(start, io.SeekStart); err != nil {
			return err
		}
		_, etag, err = l.s.put(ctx, key, r, PutOptions{Size: size}, cond)
	}
	if err != nil {
		return err
	}
	l.note(key, etag)
	return nil
}

// FencedDelete deletes key (relative to the sink's prefix) if this lease
// is still held (Confirm).
func (l *s3Lease) FencedDelete(ctx context.Context, key string) error {
	if err := l.Confirm(ctx); err != nil {
		return err
	}
	if err := l.s.Delete(ctx, key); err != nil {
		return err
	}
	l.note(key, "")
	return nil
}

// note records the ETag of key's version this lease last saw; "" for none.
func (l *s3Lease) note(key, etag string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen == nil {
		l.seen = map[string]string{}
	}
	l.seen[key] = etag
}

// condition is the precondition of a write of key: the version last seen,
// or none.
func (l *s3Lease) condition(key string) precondition {
	l.mu.Lock()
	defer l.mu.Unlock()
	if etag := l.seen[key]; etag != "" {
		return precondition{ifMatch: etag, bare: l.cond.bareETag}
	}
	return precondition{create: true}
}

// current is the precondition that replaces the version of key there now.
func (l *s3Lease) current(ctx context.Context, key string) (precondition, error) {
	out, err := l.s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(l.s.bucket), Key: aws.String(l.s.full(key))})
	if status(err) == http.StatusNotFound {
		return precondition{create: true}, nil
	}
	if err != nil {
		return precondition{}, l.s.classify("stat", key, err)
	}
	return precondition{ifMatch: aws.ToString(out.ETag), bare: l.cond.bareETag}, nil
}

// confirmNow renews the lease whatever the time of the last renewal, and
// fails it if another run holds it (LostLockError).
func (l *s3Lease) confirmNow(ctx context.Context) error {
	if err := l.Err(); err != nil {
		return err
	}
	err := l.renewOnce(ctx, l.renewInterval())
	if errors.As(err, new(*LostLockError)) {
		l.fail(err)
	}
	return err
}

// completeConditions reports whether CompleteMultipartUpload may carry
// If-Match / If-None-Match here: a server that refuses them as unknown
// (rather than ignoring them) would otherwise fail every large fenced
// write. It asks once per sink, by completing a one-part upload of a
// scratch object in the state folder with If-None-Match: *.
func (s *S3) completeConditions(ctx context.Context) bool {
	s.condMu.Lock()
	defer s.condMu.Unlock()
	if s.completeProbed {
		return s.completeCond
	}
	key := s.full(stateDir + "/probe-complete-" + rand.Text())
	refused := func() bool {
		up, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(s.bucket), Key: aws.String(key)}, noRetry)
		if err != nil {
			return false // no verdict on conditions; the real upload will tell
		}
		id := up.UploadId
		defer func() {
			_, _ = s.client.AbortMultipartUpload(context.WithoutCancel(ctx), &s3.AbortMultipartUploadInput{Bucket: aws.String(s.bucket), Key: aws.String(key), UploadId: id})
			_, _ = s.client.DeleteObject(context.WithoutCancel(ctx), &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
		}()
		part, err := s.client.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(s.bucket), Key: aws.String(key), UploadId: id,
			PartNumber: aws.Int32(1), Body: strings.NewReader("probe"), ContentLength: aws.Int64(5)})
		if err != nil {
			return false
		}
		_, err = s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(s.bucket), Key: aws.String(key), UploadId: id,
			IfNoneMatch:     aws.String("*"),
			MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{{PartNumber: aws.Int32(1), ETag: part.ETag}}}})
		return err != nil && unsupported(err)
	}()
	if ctx.Err() != nil {
		return false
	}
	s.completeProbed, s.completeCond = true, !refused
	return s.completeCond
}
