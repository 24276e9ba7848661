package sink_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/artifact-sync/artifact-sync/sink"
	"github.com/artifact-sync/artifact-sync/sink/sinktest"
)

// TestS3UploadIntegrity: a server that keeps something other than what was
// sent (gofakes3's file backend emptied multipart objects it copied onto
// themselves) must fail the Put, never report success; and no upload
// copies an object onto itself any more.
func TestS3UploadIntegrity(t *testing.T) {
	env := sinktest.NewS3Bucket(t)
	var copies, lies atomic.Int32
	s := withTransport(t, env, "integrity", func(next http.RoundTripper) http.RoundTripper {
		return roundTrip(func(r *http.Request) (*http.Response, error) {
			if r.Header.Get("X-Amz-Copy-Source") != "" {
				copies.Add(1)
			}
			resp, err := next.RoundTrip(r)
			if err == nil && r.Method == http.MethodHead && strings.Contains(r.URL.Path, "/liar") {
				// The object the server holds is empty.
				lies.Add(1)
				resp.Header.Set("Content-Length", "0")
				resp.ContentLength = 0
				resp.Header.Del("X-Amz-Checksum-Crc64nvme")
				resp.Header.Del("X-Amz-Checksum-Sha256")
			}
			return resp, err
		})
	})
	for _, n := range []int{1000, sinktest.BigSize} {
		data := sinktest.Data(5, n)
		key := "liar-" + strconv.Itoa(n)
		_, err := s.Put(t.Context(), key, bytes.NewReader(data), sink.PutOptions{Size: int64(n)})
		if !errors.Is(err, sink.ErrMismatch) || strings.Contains(err.Error(), "\n") {
			t.Errorf("Put(%d bytes) to a server that kept 0: %v; want one line matching sink.ErrMismatch", n, err)
		}
		if _, err := env.NewS3(t, "integrity").Stat(t.Context(), key); err == nil {
			t.Errorf("the mismatched object %s is still there", key)
		}
		info, err := s.Put(t.Context(), "good-"+strconv.Itoa(n), bytes.NewReader(data), sink.PutOptions{Size: -1})
		if err != nil || info.Size != int64(n) {
			t.Errorf("Put to an honest key: %+v, %v", info, err)
		}
	}
	if lies.Load() == 0 {
		t.Fatal("the HEAD after upload was never made")
	}
	if n := copies.Load(); n != 0 {
		t.Errorf("%d server-side copies during uploads; an upload must not rewrite its object", n)
	}
}

// TestS3TidyUploads: a later run aborts the multipart uploads earlier runs
// abandoned (one whose creation's reply was lost, so its ID was never
// recorded; and, past AbandonAfter, recorded ones), and leaves alone an
// upload of somebody else that is younger than that, and a recent one it
// can still resume.
func TestS3TidyUploads(t *testing.T) {
	env := sinktest.NewS3Bucket(t)
	// A run whose CreateMultipartUpload reply is lost: S3 began the upload.
	var lost atomic.Bool
	s := withTransport(t, env, "tidy", func(next http.RoundTripper) http.RoundTripper {
		return roundTrip(func(r *http.Request) (*http.Response, error) {
			resp, err := next.RoundTrip(r)
			if err == nil && r.Method == http.MethodPost && r.URL.Query().Has("uploads") && strings.Contains(r.URL.Path, "orphan") && !lost.Swap(true) {
				resp.Body.Close()
				return nil, errors.New("connection reset by peer")
			}
			return resp, err
		})
	})
	data := sinktest.Data(6, sinktest.BigSize)
	if _, err := s.Put(t.Context(), "orphan", bytes.NewReader(data), sink.PutOptions{Size: int64(len(data))}); err == nil {
		t.Fatal("Put succeeded although its upload's creation failed")
	}
	// A run that failed midway: resumable.
	failing := io.MultiReader(bytes.NewReader(data[:len(data)*3/4]), &errAfter{err: io.ErrUnexpectedEOF})
	if _, err := s.Put(t.Context(), "resumable", failing, sink.PutOptions{Size: int64(len(data))}); err == nil {
		t.Fatal("failing Put succeeded")
	}
	// Somebody else's upload under the prefix, just begun.
	c := env.Client()
	if _, err := c.CreateMultipartUpload(t.Context(), &s3.CreateMultipartUploadInput{Bucket: aws.String(env.Bucket), Key: aws.String("tidy/theirs")}); err != nil {
		t.Fatal(err)
	}
	if got := openKeys(t, env); got != "tidy/orphan tidy/resumable tidy/theirs" {
		t.Fatalf("open uploads before tidying: %s", got)
	}

	next := env.NewS3(t, "tidy")
	if err := next.TidyUploads(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := openKeys(t, env); got != "tidy/resumable tidy/theirs" {
		t.Errorf("open uploads after tidying: %s; want the resumable one and the other's young one", got)
	}
	if p, err := next.Partial(t.Context(), "resumable"); err != nil || p.Size == 0 {
		t.Errorf("Partial after tidying = %+v, %v; want the kept parts", p, err)
	}

	time.Sleep(10 * time.Millisecond)
	cfg := env.Config("tidy")
	cfg.AbandonAfter = time.Millisecond
	later, err := sink.NewS3(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := later.TidyUploads(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := openKeys(t, env); got != "" {
		t.Errorf("open uploads after AbandonAfter: %s; want none", got)
	}
	if keys := sinktest.Keys(t, later, ".artifact-sync/uploads/"); len(keys) != 0 {
		t.Errorf("upload state left: %q", keys)
	}
}

func openKeys(t *testing.T, env sinktest.S3Env) string {
	t.Helper()
	keys := env.OpenUploads(t)
	return strings.Join(keys, " ")
}

// TestS3PutRetriesSlowDown: a 503 SlowDown on a PUT whose
// bytes are in memory (a small object such as a manifest journal, or a
// part of a multipart upload) is retried there, not turned into a failed
// write that stops the run.
func TestS3PutRetriesSlowDown(t *testing.T) {
	env := sinktest.NewS3Bucket(t)
	var slowed atomic.Int32
	var seen sync.Map // each PUT (object, part) is answered 503 the first time
	s := withTransport(t, env, "retry", func(next http.RoundTripper) http.RoundTripper {
		return roundTrip(func(r *http.Request) (*http.Response, error) {
			if _, again := seen.LoadOrStore(r.URL.String(), true); r.Method == http.MethodPut && !again {
				slowed.Add(1)
				if r.Body != nil {
					io.Copy(io.Discard, r.Body)
					r.Body.Close()
				}
				return &http.Response{StatusCode: http.StatusServiceUnavailable, Header: http.Header{"Content-Type": {"application/xml"}}, Request: r,
					Body: io.NopCloser(strings.NewReader("<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"))}, nil
			}
			return next.RoundTrip(r)
		})
	})
	for _, c := range []struct {
		key string
		r   func([]byte) io.Reader
		n   int
	}{
		{".artifact-sync/manifest/journal-1.jsonl", func(b []byte) io.Reader { return bytes.NewReader(b) }, 300},
		{"small.bin", func(b []byte) io.Reader { return io.MultiReader(bytes.NewReader(b)) }, 3000},
		{"big.bin", func(b []byte) io.Reader { return io.MultiReader(bytes.NewReader(b)) }, sinktest.BigSize},
	} {
		data := sinktest.Data(9, c.n)
		if _, err := s.Put(t.Context(), c.key, c.r(data), sink.PutOptions{Size: int64(c.n)}); err != nil {
			t.Errorf("Put(%s) with each PUT answered 503 SlowDown once: %v", c.key, err)
		}
	}
	if slowed.Load() < 4 {
		t.Fatalf("only %d PUTs were made", slowed.Load())
	}
}

// TestS3HugeDeclaredSize: a source that claims petabytes fails that
// artifact at once with a clear error; one that claims terabytes but
// delivers little costs only what it delivered, not part buffers sized
// for the claim.
func TestS3HugeDeclaredSize(t *testing.T) {
	env := sinktest.NewS3Bucket(t)
	s := env.NewS3(t, "huge")
	_, err := s.Put(t.Context(), "claims-8EiB", &zeroes{1 << 20}, sink.PutOptions{Size: 1<<63 - 1})
	if err == nil || !strings.Contains(err.Error(), "5 TiB") || sink.IsPermanent(err) {
		t.Errorf("Put of a declared 8 EiB: %v; want a clear (per-artifact, not run-stopping) error naming S3's 5 TiB limit", err)
	}
	const claim = 4 << 40 // parts of 440 MB to fit 10,000 of them
	var perr error
	peak := peakHeap(t, func() {
		_, perr = s.Put(t.Context(), "claims-4TiB", &zeroes{12 << 20}, sink.PutOptions{Size: claim})
	})
	if !errors.Is(perr, sink.ErrShortStream) {
		t.Errorf("Put of 12 MiB declared as 4 TiB: %v; want ErrShortStream", perr)
	}
	if peak > 64<<20 {
		t.Errorf("Put of 12 MiB declared as 4 TiB raised the heap by %d MiB", peak>>20)
	}
	if ups := env.OpenUploads(t); len(ups) != 0 {
		t.Errorf("uploads left open: %q", ups)
	}
}
