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
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// DefaultS3LockTTL is the lease time S3.Lock uses when given none.
const DefaultS3LockTTL = 2 * time.Minute

// maxRenewInterval bounds the time between renewals, so a run whose lease
// was taken from it finds out within seconds.
const maxRenewInterval = 5 * time.Second

// Lock implements Locker with a lease object <prefix>/.artifact-sync/<name>
// and S3 conditional writes.
//
// It first proves that the server enforces them on this bucket (see
// ConditionalWritesError): without that, a lease object is only a note
// that a second run could overwrite. The object says who holds the lease
// and until when. It is created with If-None-Match: *, so of many racing
// takers one wins; a lease whose expiry has passed (its holder died or
// released it), or whose holder is a process of this machine that no
// longer exists (it was killed), is taken over with If-Match on the ETag
// that was read. The holder renews it with If-Match every few seconds
// (at most ttl/3), and declares it lost (LostLockError) when a renewal
// finds another holder, or when it could not renew for nearly ttl, before
// anyone else may take it over. Release deletes it with If-Match on
// servers that were seen to honour If-Match on DELETE; elsewhere, or if
// that fails, it overwrites it, with If-Match, by an expired record (and
// deletes that where it can): it never removes a lease that another run
// holds.
//
// Expiry is judged by the server's clock only: a lease runs out ttl (plus
// a second, the resolution of HTTP dates) after the server last stored the
// lease object (its Last-Modified), as of the Date of the response that
// read it. The holder counts from just before it sent its last renewal
// that went through, on its own monotonic clock, and gives up two renewal
// intervals short of ttl; the server stored that renewal after it was
// sent, so the holder stops before any taker may start, whatever the skew
// between the machines' clocks (only their rates count: parts per
// million). Records of older versions, without a lease time, still expire
// by the reader's clock.
//
// A lease cannot stop a write already on its way when it runs out (a
// paused process, a partition): writes of the holder's state go through
// FencedPut, conditional on the object itself.
//
// With S3Config.NoLock, Lock takes nothing and returns a lease that holds
// nothing (for servers without conditional writes, at the user's risk).
func (s *S3) Lock(ctx context.Context, name, holder string, ttl time.Duration) (Lease, error) {
	if err := validLockName(name); err != nil {
		return nil, err
	}
	if s.noLock {
		return noLease{}, nil
	}
	if ttl <= 0 {
		ttl = DefaultS3LockTTL
	}
	cond, err := s.probeConditionalWrites(ctx)
	if err != nil {
		return nil, err
	}
	l := &s3Lease{s: s, name: name, key: s.full(stateDir + "/" + name), holder: holder, cond: cond,
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
		if (!rec.expired && !holderGone(rec.lockRecord)) || attempt >= 3 {
			return nil, &LockedError{Name: name, Dest: "s3://" + s.bucket + "/" + strings.TrimSuffix(s.prefix, "/"), Holder: rec.Holder,
				PID: rec.PID, Host: rec.Host, Since: rec.Since, Until: rec.until}
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
	l.renewed = l.since
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

// ConditionalWritesError is Lock's refusal of a server that does not
// enforce conditional writes on the bucket: two runs could then both
// "hold" the lock and overwrite each other's manifest.
type ConditionalWritesError struct {
	Endpoint, Bucket string
	Gap              string // what the server did, e.g. "a PUT with If-None-Match: * replaced an existing object"
}

func (e *ConditionalWritesError) Error() string {
	return fmt.Sprintf("S3 at %s does not enforce conditional writes on bucket %q (%s), so it cannot keep two runs from overwriting each other's manifest; "+
		"use a server that does, or pass --s3-lock=none to run without a lock at your own risk", e.Endpoint, e.Bucket, e.Gap)
}

// condWrites is what probeConditionalWrites learnt about the server.
type condWrites struct {
	// bareETag: If-Match works only with the ETag unquoted (Ceph RGW
	// before 2025 answers 412 to the quoted form).
	bareETag bool
	// deleteIfMatch: DELETE honours If-Match (MinIO and others ignore it).
	deleteIfMatch bool
}

// probeConditionalWrites checks, once per sink, that the server enforces
// If-None-Match: * and If-Match on PUT in this bucket, using a scratch
// object in the state folder, and learns which ETag form If-Match wants and
// whether DELETE honours it.
func (s *S3) probeConditionalWrites(ctx context.Context) (condWrites, error) {
	s.condMu.Lock()
	defer s.condMu.Unlock()
	if s.condErr != nil || s.condOK {
		return s.cond, s.condErr
	}
	key := stateDir + "/probe-" + rand.Text()
	put := func(hdr func(*s3.PutObjectInput)) (string, error) {
		in := &s3.PutObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.full(key)),
			Body: strings.NewReader("probe"), ContentLength: aws.Int64(5)}
		hdr(in)
		out, err := s.client.PutObject(ctx, in)
		if err != nil {
			return "", err
		}
		return aws.ToString(out.ETag), nil
	}
	fail := func(gap string) (condWrites, error) {
		s.condErr = &PermanentError{Err: &ConditionalWritesError{Endpoint: s.endpoint, Bucket: s.bucket, Gap: gap}}
		return condWrites{}, s.condErr
	}
	defer func() {
		// A probe object that could not be deleted is a few bytes in the
		// state folder, and the verdict stands: not worth failing for.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_, _ = s.client.DeleteObject(dctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.full(key))})
	}()
	var c condWrites
	etag, err := put(func(in *s3.PutObjectInput) { in.IfNoneMatch = aws.String("*") })
	switch {
	case unsupported(err):
		return fail("it refused a PUT with If-None-Match: *")
	case err != nil:
		return c, s.classify("lock", key, err)
	}
	_, err = put(func(in *s3.PutObjectInput) { in.IfNoneMatch = aws.String("*") })
	switch {
	case err == nil:
		return fail("a PUT with If-None-Match: * replaced an existing object")
	case !preconditionFailed(err):
		return c, s.classify("lock", key, err)
	}
	_, err = put(func(in *s3.PutObjectInput) { in.IfMatch = aws.String(`"00000000000000000000000000000000"`) })
	switch {
	case err == nil:
		return fail("a PUT with If-Match and a wrong ETag replaced the object")
	case !preconditionFailed(err):
		return c, s.classify("lock", key, err)
	}
	_, err = put(func(in *s3.PutObjectInput) { in.IfMatch = aws.String(etag) })
	if preconditionFailed(err) && unquote(etag) != etag {
		_, err = put(func(in *s3.PutObjectInput) { in.IfMatch = aws.String(unquote(etag)) })
		c.bareETag = err == nil
	}
	switch {
	case preconditionFailed(err):
		return fail("a PUT with If-Match and the object's own ETag was refused")
	case err != nil:
		return c, s.classify("lock", key, err)
	}
	_, err = s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.full(key)),
		IfMatch: aws.String(`"00000000000000000000000000000000"`)})
	c.deleteIfMatch = preconditionFailed(err)
	s.cond, s.condOK = c, true
	return c, nil
}

// LostLockError is the Err of a lease that was lost while held.
type LostLockError struct {
	Lock   string    // s3://bucket/prefix/.artifact-sync/lock
	Holder string    // who holds it now; "" if unknown
	Since  time.Time // when they took it
	Reason string    // when Holder is "": why the lease is lost
}

func (e *LostLockError) Error() string {
	why := e.Reason
	if e.Holder != "" {
		why = "taken over by " + e.Holder
		if !e.Since.IsZero() {
			why += " at " + e.Since.UTC().Format(time.RFC3339)
		}
	}
	return fmt.Sprintf("lost the lock on %s: %s; another run may be writing this destination, so this run stopped without writing over it: "+
		"run the same command again once that run is done, to resume", e.Lock, why)
}

type s3Lease struct {
	s      *S3
	name   string
	key    string
	holder string
	token  string
	ttl    time.Duration
	cond   condWrites
	since  time.Time
	cancel context.CancelFunc
	done   chan struct{} // closed when renew returns

	mu       sync.Mutex
	etag     string
	renewed  time.Time         // when the last write of the lease was sent
	seen     map[string]string // by key: the ETag FencedOpen or FencedPut saw ("": none)
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
	return l.put(ctx, ifMatch, leaseRecord{lockRecord: lockRecord{Holder: l.holder, Since: since.UTC(), Expires: now.Add(l.ttl).UTC(), Token: l.token,
		PID: os.Getpid(), Scope: processScope(), Host: hostname()}, TTL: l.ttl.Seconds()})
}

// leaseRecord is what the lease object holds, and whether it has run out.
type leaseRecord struct {
	lockRecord
	// TTL (seconds) is the lease time: the lease runs out TTL after the
	// server last stored the object (its Last-Modified), by the server's
	// clock. A record without it (an older version of the tool wrote it)
	// runs out at Expires, by the reader's clock.
	TTL float64 `json:"ttl_seconds,omitempty"`
	// Released says the holder gave the lease up: anyone may take it.
	Released bool `json:"released,omitempty"`

	expired bool      // set by read
	until   time.Time // set by read: when it runs out, unless renewed
}

// clockStep is the resolution of HTTP dates (Last-Modified, Date): whole
// seconds, each truncated, so two of them understate the time between by
// up to a second.
const clockStep = time.Second

func (l *s3Lease) put(ctx context.Context, ifMatch string, rec leaseRecord) (string, error) {
	body, _ := json.Marshal(rec)
	in := &s3.PutObjectInput{
		Bucket:        aws.String(l.s.bucket),
		Key:           aws.String(l.key),
		Body:          bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))),
		ContentType:   aws.String("application/json"),
	}
	if ifMatch == "" {
		in.IfNoneMatch = aws.String("*")
	} else if l.cond.bareETag {
		in.IfMatch = aws.String(unquote(ifMatch))
	} else {
		in.IfMatch = aws.String(ifMatch)
	}
	out, err := l.s.client.PutObject(ctx, in)
	if err != nil && ifMatch != "" && preconditionFailed(err) && unquote(ifMatch) != ifMatch && !l.cond.bareETag {
		// Some servers want the ETag unquoted; try that form once.
		in.IfMatch = aws.String(unquote(ifMatch))
		in.Body = bytes.NewReader(body)
		out, err = l.s.client.PutObject(ctx, in)
	}
	if err != nil {
		return "", err
	}
	return aws.ToString(out.ETag), nil
}

// read returns the current lease record and its ETag. Whether the lease
// has run out is judged by the server's clock alone: the Date of this
// response against the object's Last-Modified plus the lease time, so the
// clocks of the holder and the reader never meet.
func (l *s3Lease) read(ctx context.Context) (leaseRecord, string, error) {
	var rec leaseRecord
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
	lm := aws.ToTime(out.LastModified)
	if err := json.Unmarshal(b, &rec); err != nil {
		// Not ours to interpret: treat as held by someone unknown until
		// it has not changed for a ttl.
		rec = leaseRecord{lockRecord: lockRecord{Holder: "an unknown holder (unreadable lease object)", Since: lm, Expires: lm.Add(l.ttl)}, TTL: l.ttl.Seconds()}
	}
	now, dated := awsmiddleware.GetServerTime(out.ResultMetadata)
	switch {
	case rec.Released:
		rec.expired = true
	case rec.TTL > 0 && dated && !lm.IsZero():
		rec.until = lm.Add(time.Duration(rec.TTL*float64(time.Second)) + clockStep)
		rec.expired = !now.Before(rec.until)
	default:
		rec.until = rec.Expires
		rec.expired = !time.Now().Before(rec.Expires)
	}
	return rec, aws.ToString(out.ETag), nil
}

// renewInterval is the time between renewals: a third of the ttl, and at
// most a few seconds.
func (l *s3Lease) renewInterval() time.Duration { return min(l.ttl/3, maxRenewInterval) }

// renew extends the lease every renewInterval until released. It declares
// the lease lost when a renewal finds another holder, or when renewals
// have failed for so long that another run may take it over at its next
// look (ttl less two intervals after the last renewal that went through).
func (l *s3Lease) renew(ctx context.Context) {
	defer close(l.done)
	every := l.renewInterval()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := l.renewOnce(ctx, every)
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return
		case errors.As(err, new(*LostLockError)):
			l.fail(err)
			return
		default:
			l.mu.Lock()
			last := l.renewed
			l.mu.Unlock()
			if time.Since(last) > l.ttl-2*every {
				l.fail(&LostLockError{Lock: l.s.url(stateDir + "/" + l.name),
					Reason: fmt.Sprintf("could not renew it for %s (%v), so another run may take it over", time.Since(last).Round(time.Second), err)})
				return
			}
		}
	}
}

// renewOnce writes the lease again. A 412 is checked against the object:
// if it carries this lease's token, the write went through and only its
// reply was lost (the SDK retried it), so the lease is still held.
func (l *s3Lease) renewOnce(ctx context.Context, timeout time.Duration) error {
	l.mu.Lock()
	etag := l.etag
	l.mu.Unlock()
	now := time.Now()
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	newTag, err := l.write(wctx, etag, now)
	if preconditionFailed(err) || status(err) == http.StatusNotFound {
		// 404: versitygw's answer to If-Match on an object that is gone.
		rec, cur, rerr := l.read(wctx)
		switch {
		case rerr == nil && rec.Token == l.token:
			newTag, err = cur, nil
		case rerr == nil:
			return &LostLockError{Lock: l.s.url(stateDir + "/" + l.name), Holder: rec.Holder, Since: rec.Since}
		case errors.Is(rerr, errNoLease):
			return &LostLockError{Lock: l.s.url(stateDir + "/" + l.name), Reason: "its lease object was deleted (another run took it over and released it, or someone removed it)"}
		default:
			return rerr
		}
	}
	if err != nil {
		return l.s.classify("renew the lock", stateDir+"/"+l.name, err)
	}
	l.mu.Lock()
	l.etag, l.renewed = newTag, now
	l.mu.Unlock()
	return nil
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

// Confirm checks that the lease is still held, renewing it first unless
// the last renewal is less than a renewal interval old: after it returns
// nil, no other run can take the lease for at least a renewal interval. A
// caller makes a write conditional on holding the lease by confirming just
// before it.
func (l *s3Lease) Confirm(ctx context.Context) error {
	l.mu.Lock()
	err, fresh := l.err, time.Since(l.renewed) < l.renewInterval()
	l.mu.Unlock()
	if err != nil || fresh {
		return err
	}
	err = l.renewOnce(ctx, l.renewInterval())
	if errors.As(err, new(*LostLockError)) {
		l.fail(err)
		return err
	}
	if err != nil {
		// Not renewed now, but the last renewal still keeps others out
		// for a while: the renewal loop decides when it is too old.
		l.mu.Lock()
		held := time.Since(l.renewed) < l.ttl-2*l.renewInterval()
		l.mu.Unlock()
		if held {
			return nil
		}
	}
	return err
}

// Release stops renewing and gives the lease up if it is still ours. Where
// the server honours If-Match on DELETE, it deletes the object with
// If-Match on the ETag it last wrote: one request. Otherwise, or if that
// fails (a renewal cut short by Release may have landed with an ETag this
// lease did not learn), it overwrites the object (If-Match) with a record
// that has expired, which any taker may take over, then deletes that with
// If-Match where the server honours it. A lease that another run took is
// left alone.
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
	if l.cond.deleteIfMatch && l.deleteIfMatch(ctx, etag) == nil {
		return nil
	}
	now := time.Now().UTC()
	released := leaseRecord{lockRecord: lockRecord{Holder: l.holder + " (released)", Since: now, Expires: now}, Released: true}
	etag, err := l.put(ctx, etag, released)
	if preconditionFailed(err) {
		// A renewal cut short by Release may have landed without this
		// lease learning its ETag: the token in the object tells.
		rec, cur, rerr := l.read(ctx)
		if rerr != nil || rec.Token != l.token {
			return nil // no longer ours
		}
		etag, err = l.put(ctx, cur, released)
		if preconditionFailed(err) {
			return nil
		}
	}
	if err != nil {
		return l.s.classify("unlock", stateDir+"/"+l.name, err)
	}
	if !l.cond.deleteIfMatch {
		return nil
	}
	err = l.deleteIfMatch(ctx, etag)
	if err == nil || preconditionFailed(err) {
		return nil
	}
	return l.s.classify("unlock", stateDir+"/"+l.name, err)
}

// deleteIfMatch deletes the lease object if its ETag is etag; a lease
// object already gone counts as deleted.
func (l *s3Lease) deleteIfMatch(ctx context.Context, etag string) error {
	ifMatch := etag
	if l.cond.bareETag {
		ifMatch = unquote(etag)
	}
	_, err := l.s.client.DeleteObject(ctx, &s3.DeleteObjectInput{
		Bucket: aws.String(l.s.bucket), Key: aws.String(l.key), IfMatch: aws.String(ifMatch)})
	if status(err) == http.StatusNotFound {
		return nil
	}
	return err
}

// noLease is the lease of a sink configured with NoLock: it holds nothing.
type noLease struct{}

func (noLease) Release(context.Context) error { return nil }
func (noLease) Lost() <-chan struct{}         { return nil }
func (noLease) Err() error                    { return nil }
