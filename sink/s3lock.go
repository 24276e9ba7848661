package sink

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// DefaultS3LockTTL is the lease time S3.Lock uses when given none.
const DefaultS3LockTTL = 2 * time.Minute

// Lock implements Locker with a lease object <prefix>/.artifact-sync/<name>
// and S3 conditional writes. The object says who holds the lease and until
// when. It is created with If-None-Match: *, so of many racing takers one
// wins; a lease whose expiry has passed (its holder died), or whose holder
// is a process of this machine that no longer exists (it was killed), is
// taken over with If-Match on the ETag that was read, and the holder renews
// it with If-Match every ttl/3. Release deletes it if it is still ours.
// Expiry compares the clocks of different hosts, so ttl should dwarf their
// skew (minutes).
func (s *S3) Lock(ctx context.Context, name, holder string, ttl time.Duration) (Lease, error) {
	if err := validLockName(name); err != nil {
		return nil, err
	}
	if ttl <= 0 {
		ttl = DefaultS3LockTTL
	}
	l := &s3Lease{s: s, name: name, key: s.full(stateDir + "/" + name), holder: holder,
		token: rand.Text(), ttl: ttl, lost: make(chan struct{}), done: make(chan struct{})}
	for attempt := 0; ; attempt++ {
		etag, err := l.write(ctx, "", time.Now())
		if err == nil {
			l.etag = etag
			break
		}
		if !preconditionFailed(err) {
			return nil, s.classify("lock", stateDir+"/"+name, err)
		}
		rec, cur, err := l.read(ctx)
		if errors.Is(err, errNoLease) && attempt < 3 {
			continue // released meanwhile: try to create it again
		}
		if err != nil {
			return nil, err
		}
		if rec.Token == l.token { // our own create, retried by the SDK
			l.etag = cur
			break
		}
		if (time.Now().Before(rec.Expires) && !holderGone(rec)) || attempt >= 3 {
			return nil, &LockedError{Name: name, Holder: rec.Holder, Since: rec.Since}
		}
		etag, err = l.write(ctx, cur, time.Now())
		if err == nil {
			l.etag = etag
			break
		}
		if !preconditionFailed(err) {
			return nil, s.classify("lock", stateDir+"/"+name, err)
		}
		// Someone else took it over first; look again.
	}
	l.since = time.Now()
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l.cancel = cancel
	go l.renew(rctx)
	return l, nil
}

var errNoLease = errors.New("no lease object")

// holderGone reports whether rec's holder is a process of this machine's
// PID namespace that no longer exists, such as a run killed with SIGKILL.
func holderGone(rec lockRecord) bool {
	return rec.PID > 0 && rec.Scope != "" && rec.Scope == processScope() &&
		rec.PID != os.Getpid() && processGone(rec.PID)
}

func preconditionFailed(err error) bool {
	// 412 Precondition Failed; 409 ConditionalRequestConflict when two
	// conditional writes race on AWS.
	return status(err) == http.StatusPreconditionFailed || status(err) == http.StatusConflict
}

type s3Lease struct {
	s      *S3
	name   string
	key    string
	holder string
	token  string
	ttl    time.Duration
	since  time.Time
	cancel context.CancelFunc
	done   chan struct{} // closed when renew returns

	mu       sync.Mutex
	etag     string
	err      error
	lost     chan struct{}
	released bool
}

// write puts the lease object: created if ifMatch is "", else replacing
// the version with that ETag. It returns the new ETag.
func (l *s3Lease) write(ctx context.Context, ifMatch string, now time.Time) (string, error) {
	since := l.since
	if since.IsZero() {
		since = now
	}
	body, _ := json.Marshal(lockRecord{Holder: l.holder, Since: since.UTC(), Expires: now.Add(l.ttl).UTC(), Token: l.token,
		PID: os.Getpid(), Scope: processScope()})
	in := &s3.PutObjectInput{
		Bucket:        aws.String(l.s.bucket),
		Key:           aws.String(l.key),
		Body:          bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))),
		ContentType:   aws.String("application/json"),
	}
	if ifMatch == "" {
		in.IfNoneMatch = aws.String("*")
	} else {
		in.IfMatch = aws.String(ifMatch)
	}
	out, err := l.s.client.PutObject(ctx, in)
	if err != nil {
		return "", err
	}
	return aws.ToString(out.ETag), nil
}

// read returns the current lease record and its ETag.
func (l *s3Lease) read(ctx context.Context) (lockRecord, string, error) {
	var rec lockRecord
	out, err := l.s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(l.s.bucket), Key: aws.String(l.key)})
	if status(err) == http.StatusNotFound {
		return rec, "", errNoLease
	}
	if err != nil {
		return rec, "", l.s.classify("lock", stateDir+"/"+l.name, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(io.LimitReader(out.Body, 64<<10))
	if err != nil {
		return rec, "", l.s.classify("lock", stateDir+"/"+l.name, err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		// Not ours to interpret: treat as held by someone unknown until
		// it has not changed for a ttl.
		lm := aws.ToTime(out.LastModified)
		rec = lockRecord{Holder: "an unknown holder (unreadable lease object)", Since: lm, Expires: lm.Add(l.ttl)}
	}
	return rec, aws.ToString(out.ETag), nil
}

// renew extends the lease every ttl/3 until released, and declares it lost
// if someone else replaced it or it could not be renewed before expiry.
func (l *s3Lease) renew(ctx context.Context) {
	defer close(l.done)
	expires := time.Now().Add(l.ttl)
	t := time.NewTicker(l.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l.mu.Lock()
		etag := l.etag
		l.mu.Unlock()
		now := time.Now()
		wctx, cancel := context.WithTimeout(ctx, l.ttl/3)
		newTag, err := l.write(wctx, etag, now)
		cancel()
		switch {
		case err == nil:
			expires = now.Add(l.ttl)
			l.mu.Lock()
			l.etag = newTag
			l.mu.Unlock()
		case ctx.Err() != nil:
			return
		case preconditionFailed(err):
			l.fail(fmt.Errorf("lock %q on %s was taken over by another run", l.name, l.s))
			return
		case time.Now().After(expires):
			l.fail(fmt.Errorf("lock %q on %s expired: renewing failed: %w", l.name, l.s, l.s.classify("lock", stateDir+"/"+l.name, err)))
			return
		}
	}
}

func (l *s3Lease) fail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil && !l.released {
		l.err = err
		close(l.lost)
	}
}

func (l *s3Lease) Lost() <-chan struct{} { return l.lost }

func (l *s3Lease) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Release stops renewing and deletes the lease object if it is still ours
// (DeleteObject with If-Match).
func (l *s3Lease) Release(ctx context.Context) error {
	l.mu.Lock()
	if l.released {
		l.mu.Unlock()
		return nil
	}
	l.released = true
	lost := l.err != nil
	l.mu.Unlock()
	l.cancel()
	<-l.done
	if lost {
		return nil
	}
	l.mu.Lock()
	etag := l.etag
	l.mu.Unlock()
	_, err := l.s.client.DeleteObject(ctx, &s3.DeleteObjectInput{
		Bucket: aws.String(l.s.bucket), Key: aws.String(l.key), IfMatch: aws.String(etag)})
	if err == nil || status(err) == http.StatusNotFound || preconditionFailed(err) {
		return nil
	}
	return l.s.classify("unlock", stateDir+"/"+l.name, err)
}
