package sink_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
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
