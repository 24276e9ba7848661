package sink_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/artifact-sync/artifact-sync/sink"
	"github.com/artifact-sync/artifact-sync/sink/sinktest"
)

// roundTrip adapts a function to http.RoundTripper.
type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// withTransport returns a sink for env below prefix whose requests go
// through wrap, which plays a server's quirk on top of the real one.
func withTransport(t *testing.T, env sinktest.S3Env, prefix string, wrap func(next http.RoundTripper) http.RoundTripper) *sink.S3 {
	t.Helper()
	t.Setenv("AWS_CA_BUNDLE", "") // the SDK cannot add a CA bundle to a custom client
	cfg := env.Config(prefix)
	cfg.HTTPClient = &http.Client{Transport: wrap(http.DefaultTransport)}
	s, err := sink.NewS3(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func isLockWrite(r *http.Request) bool {
	return r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/.artifact-sync/lock")
}

// TestS3LockRefusesWithoutConditionalWrites: on a server that ignores
// conditional writes a lease proves nothing, so Lock refuses with one
// line naming the gap and the way out; --s3-lock=none (NoLock) runs
// without one.
func TestS3LockRefusesWithoutConditionalWrites(t *testing.T) {
	env := sinktest.NewFakeS3(t, true)
	s := env.NewS3(t, "dest")
	_, err := s.Lock(t.Context(), sink.DefaultLockName, "host a pid 1 run x", time.Minute)
	var ce *sink.ConditionalWritesError
	if !errors.As(err, &ce) || !sink.IsPermanent(err) {
		t.Fatalf("Lock on a server without conditional writes: %v; want a permanent *sink.ConditionalWritesError", err)
	}
	msg := err.Error()
	for _, want := range []string{"If-None-Match", "--s3-lock=none", env.Endpoint, env.Bucket} {
		if !strings.Contains(msg, want) || strings.Contains(msg, "\n") {
			t.Errorf("refusal %q: want one line with %q", msg, want)
		}
	}
	// Both racing runs refuse: neither writes a lease.
	if _, err := env.NewS3(t, "dest").Lock(t.Context(), sink.DefaultLockName, "host b pid 2 run y", time.Minute); !errors.As(err, &ce) {
		t.Errorf("second Lock: %v, want the same refusal", err)
	}
	if keys := sinktest.Keys(t, s, ""); len(keys) != 0 {
		t.Errorf("the refused runs left %q", keys)
	}
	cfg := env.Config("dest")
	cfg.NoLock = true
	none, err := sink.NewS3(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	lease, err := none.Lock(t.Context(), sink.DefaultLockName, "host a pid 1 run x", time.Minute)
	if err != nil {
		t.Fatalf("Lock with NoLock: %v", err)
	}
	if err := lease.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestS3LockRenewalWithLostReply: a renewal whose write went through but
// whose reply was lost is retried by the SDK and answered 412; the lease
// is still ours (its token is in the object), not "taken over".
func TestS3LockRenewalWithLostReply(t *testing.T) {
	env := sinktest.NewS3Bucket(t)
	var renewals, dropped atomic.Int32
	s := withTransport(t, env, "dest", func(next http.RoundTripper) http.RoundTripper {
		return roundTrip(func(r *http.Request) (*http.Response, error) {
			resp, err := next.RoundTrip(r)
			if err == nil && isLockWrite(r) && r.Header.Get("If-Match") != "" && renewals.Add(1) == 2 {
				resp.Body.Close()
				dropped.Add(1)
				return nil, errors.New("connection reset by peer (reply lost)")
			}
			return resp, err
		})
	})
	// Renewals every 3 s, each with 3 s for the SDK's retry, whose first
	// wait is a random 0-2 s: with a 2 s interval (a 6 s ttl) a wait drawn
	// near 2 s left no time for the retried PUT and the read of the token,
	// and the lease was lost (2 of 60 runs, on versitygw and Ceph RGW alike).
	// The renewal whose reply is lost is the second (at 6 s); by 10 s it
	// has either kept the lease or lost it.
	lease, err := s.Lock(t.Context(), sink.DefaultLockName, "host a pid 1 run x", 9*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Second)
	if dropped.Load() == 0 {
		t.Fatal("no renewal reply was dropped")
	}
	select {
	case <-lease.Lost():
		t.Fatalf("lease lost after a renewal reply was lost: %v", lease.Err())
	default:
	}
	if err := lease.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestS3LockWithUnquotedETags: a server that answers 412 to If-Match with
// the quoted ETag (Ceph RGW before 2025) still gets a lease that renews,
// releases, and an expired lease is taken over.
func TestS3LockWithUnquotedETags(t *testing.T) {
	env := sinktest.NewS3Bucket(t)
	s := withTransport(t, env, "dest", func(next http.RoundTripper) http.RoundTripper {
		return roundTrip(func(r *http.Request) (*http.Response, error) {
			if m := r.Header.Get("If-Match"); strings.HasPrefix(m, `"`) {
				return &http.Response{StatusCode: http.StatusPreconditionFailed, Header: http.Header{}, Request: r,
					Body: io.NopCloser(strings.NewReader("<Error><Code>PreconditionFailed</Code></Error>"))}, nil
			}
			return next.RoundTrip(r)
		})
	})
	lease, err := s.Lock(t.Context(), sink.DefaultLockName, "host a pid 1 run x", 1500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond) // several renewals
	if err := lease.Err(); err != nil {
		t.Fatalf("lease lost: %v", err)
	}
	if err := lease.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	// The released (expired) record is taken over at once.
	again, err := s.Lock(t.Context(), sink.DefaultLockName, "host b pid 2 run y", time.Minute)
	if err != nil {
		t.Fatalf("Lock after release: %v", err)
	}
	again.Release(t.Context())
}

// TestS3LockReleaseIsOneDelete: where DELETE honours If-Match (the probe
// finds out), Release is a single conditional DELETE of the lease object,
// and the next run takes the lock at once.
func TestS3LockReleaseIsOneDelete(t *testing.T) {
	env := sinktest.NewS3Bucket(t)
	var releasing atomic.Bool
	var requests []string
	s := withTransport(t, env, "dest", func(next http.RoundTripper) http.RoundTripper {
		return roundTrip(func(r *http.Request) (*http.Response, error) {
			resp, err := next.RoundTrip(r)
			if releasing.Load() {
				requests = append(requests, r.Method+" "+r.URL.Path+" If-Match: "+r.Header.Get("If-Match"))
			}
			return resp, err
		})
	})
	lease, err := s.Lock(t.Context(), sink.DefaultLockName, "host a pid 1 run x", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	releasing.Store(true)
	if err := lease.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	releasing.Store(false)
	_, headErr := env.Client().HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(env.Bucket), Key: aws.String("dest/.artifact-sync/lock")})
	if deleteHonoursIfMatch(t, env) {
		if len(requests) != 1 || !strings.HasPrefix(requests[0], "DELETE ") || strings.HasSuffix(requests[0], "If-Match: ") {
			t.Errorf("Release sent %q; want one DELETE with If-Match", requests)
		}
		if headErr == nil {
			t.Error("the lease object is still there after Release")
		}
	} else if len(requests) != 1 || !strings.HasPrefix(requests[0], "PUT ") || strings.HasSuffix(requests[0], "If-Match: ") {
		// DELETE would ignore If-Match here (MinIO): the lease is
		// overwritten, conditionally, with a record that has expired.
		t.Errorf("Release sent %q; want one PUT with If-Match on a server whose DELETE ignores it", requests)
	}
	next, err := env.NewS3(t, "dest").Lock(t.Context(), sink.DefaultLockName, "host b pid 2 run y", time.Minute)
	if err != nil {
		t.Fatalf("Lock right after Release: %v", err)
	}
	next.Release(t.Context())
}

// TestS3LockReleaseKeepsAnotherHoldersLease: on a server whose DELETE
// ignores If-Match (MinIO, gofakes3, RGW 16), a run that releases a lease
// someone else has taken in the meantime must leave theirs in place.
func TestS3LockReleaseKeepsAnotherHoldersLease(t *testing.T) {
	for name, env := range map[string]sinktest.S3Env{"gofakes3": sinktest.NewFakeS3(t, false), "server under test": sinktest.NewS3Bucket(t)} {
		t.Run(name, func(t *testing.T) { testReleaseKeepsAnotherHoldersLease(t, env) })
	}
}

func testReleaseKeepsAnotherHoldersLease(t *testing.T, env sinktest.S3Env) {
	s := env.NewS3(t, "dest")
	lease, err := s.Lock(t.Context(), sink.DefaultLockName, "host a pid 1 run x", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	lockKey := aws.String("dest/.artifact-sync/lock")
	if _, err := env.Client().PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(env.Bucket), Key: lockKey,
		Body: strings.NewReader(`{"holder":"host b pid 2 run y"}`)}); err != nil {
		t.Fatal(err)
	}
	if err := lease.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	out, err := env.Client().GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(env.Bucket), Key: lockKey})
	if err != nil {
		t.Fatalf("the other holder's lease is gone after our Release: %v", err)
	}
	b, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if !bytes.Contains(b, []byte("host b pid 2 run y")) {
		t.Errorf("the other holder's lease was overwritten: %s", b)
	}
}

// TestS3LockReleaseAfterCutRenewal: Release stops a renewal whose write
// reached the server but whose reply had not come back, so the lease does
// not know its latest ETag; it must still give the lease up, not leave it
// held until it expires.
func TestS3LockReleaseAfterCutRenewal(t *testing.T) {
	env := sinktest.NewS3Bucket(t)
	var renewing atomic.Bool
	s := withTransport(t, env, "dest", func(next http.RoundTripper) http.RoundTripper {
		return roundTrip(func(r *http.Request) (*http.Response, error) {
			resp, err := next.RoundTrip(r)
			if err == nil && isLockWrite(r) && r.Header.Get("If-Match") != "" && !renewing.Swap(true) {
				select { // the reply is slow to come back
				case <-r.Context().Done():
					resp.Body.Close()
					return nil, r.Context().Err()
				case <-time.After(5 * time.Second):
				}
			}
			return resp, err
		})
	})
	// The first renewal comes after 2 s; the lease lasts 6 s past it.
	lease, err := s.Lock(t.Context(), sink.DefaultLockName, "host a pid 1 run x", 6*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for !renewing.Load() {
		time.Sleep(10 * time.Millisecond)
	}
	if err := lease.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	next, err := env.NewS3(t, "dest").Lock(t.Context(), sink.DefaultLockName, "host b pid 2 run y", time.Minute)
	if err != nil {
		t.Fatalf("Lock right after Release: %v", err)
	}
	next.Release(t.Context())
}

// deleteHonoursIfMatch reports whether the server refuses a DELETE whose
// If-Match names another ETag, as the lock's probe finds out.
func deleteHonoursIfMatch(t *testing.T, env sinktest.S3Env) bool {
	t.Helper()
	c := env.Client()
	key := aws.String("probe/delete-if-match")
	if _, err := c.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(env.Bucket), Key: key, Body: strings.NewReader("x")}); err != nil {
		t.Fatal(err)
	}
	_, _ = c.DeleteObject(t.Context(), &s3.DeleteObjectInput{Bucket: aws.String(env.Bucket), Key: key, IfMatch: aws.String(`"0123456789abcdef0123456789abcdef"`)})
	_, err := c.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(env.Bucket), Key: key})
	_, _ = c.DeleteObject(t.Context(), &s3.DeleteObjectInput{Bucket: aws.String(env.Bucket), Key: key})
	return err == nil
}
