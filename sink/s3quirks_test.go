package sink_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/artifact-sync/artifact-sync/sink"
	"github.com/artifact-sync/artifact-sync/sink/sinktest"
)

// TestS3TaggingThatReplacesTheObject: on a server where PUT ?tagging
// stores the tagging XML as the object and answers 200 (gofakes3 1.2.0,
// played in front of the real server, and gofakes3 1.2.0 itself), a
// multipart upload never ends with its object destroyed and reported
// done: the object read back is what was put, and Stat reports its size.
func TestS3TaggingThatReplacesTheObject(t *testing.T) {
	real := sinktest.NewS3Bucket(t)
	double := sinktest.NewQuirkyS3(t, real, sinktest.Quirks{TaggingReplacesObject: true})
	for name, env := range map[string]sinktest.S3Env{
		"double":         double.Env,
		"gofakes3-1.2.0": sinktest.NewFakeS3(t, false),
	} {
		t.Run(name, func(t *testing.T) {
			s := env.NewS3(t, "tags")
			for i, size := range []int64{sinktest.BigSize, -1} {
				data := sinktest.Data(uint64(20+i), sinktest.BigSize)
				key := "big-" + string(rune('a'+i))
				info, err := s.Put(t.Context(), key, bytes.NewReader(data), sink.PutOptions{Size: size})
				if errors.Is(err, sink.ErrMismatch) {
					// Caught after the tag: a retry must then succeed.
					info, err = s.Put(t.Context(), key, bytes.NewReader(data), sink.PutOptions{Size: size})
				}
				if err != nil {
					t.Fatalf("Put(%s): %v", key, err)
				}
				got := readAll(t, env.NewS3(t, "tags"), key)
				if !bytes.Equal(got, data) {
					t.Errorf("%s: Put reported %d bytes done, the server holds %d bytes that differ: %.60q", key, info.Size, len(got), got)
				}
				if st, err := env.NewS3(t, "tags").Stat(t.Context(), key); err != nil || st.Size != int64(len(data)) {
					t.Errorf("Stat(%s) = %+v, %v", key, st, err)
				}
			}
		})
	}
	if double.Played.Load() == 0 {
		t.Error("the double never played the quirk: the test proves nothing")
	}
}

// TestS3UploadRecordThatCannotBeListedOrAborted: on a server that answers
// ListParts and AbortMultipartUpload with 405 and ListMultipartUploads
// with 501 (s3rver 3.7.1, played in front of the real server), the record
// of an upload cut short is dropped: the next run's Partial reports
// nothing to resume (not an error), and Put, DiscardPartial and
// TidyUploads start over or clean up instead of failing for good.
func TestS3UploadRecordThatCannotBeListedOrAborted(t *testing.T) {
	real := sinktest.NewS3Bucket(t)
	double := sinktest.NewQuirkyS3(t, real, sinktest.Quirks{NoUploadManagement: true})
	data := sinktest.Data(31, 17<<20)
	opts := sink.PutOptions{Size: int64(len(data)), Validator: `"v1"`}
	for _, key := range []string{"k/put", "k/resume", "k/discard", "k/tidy"} {
		s := double.Env.NewS3(t, "")
		ctx, cancel := context.WithCancel(t.Context())
		r := &cancelAfter{r: bytes.NewReader(data), after: 12 << 20, cancel: cancel, wait: func() bool {
			return recordsParts(real, key)
		}}
		if _, err := s.Put(ctx, key, r, opts); !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled Put(%s): %v", key, err)
		}
		cancel()
		if !recordsParts(real, key) {
			t.Fatalf("no upload record left by the cancelled Put(%s): nothing to test", key)
		}
	}

	next := double.Env.NewS3(t, "")
	if err := next.TidyUploads(t.Context()); err != nil {
		t.Errorf("TidyUploads: %v", err)
	}
	if err := next.DiscardPartial(t.Context(), "k/discard"); err != nil {
		t.Errorf("DiscardPartial: %v", err)
	}
	p, err := next.Partial(t.Context(), "k/resume")
	if err != nil || p.Size != 0 {
		t.Errorf("Partial = %+v, %v; want nothing to resume and no error", p, err)
	}
	for _, key := range []string{"k/put", "k/resume"} {
		if _, err := next.Put(t.Context(), key, bytes.NewReader(data), opts); err != nil {
			t.Fatalf("Put(%s) after the cut upload: %v", key, err)
		}
		if got := readAll(t, real.NewS3(t, ""), key); !bytes.Equal(got, data) {
			t.Errorf("%s: %d bytes read back, not what was put", key, len(got))
		}
	}
	if keys := sinktest.Keys(t, next, ".artifact-sync/uploads/"); len(keys) != 0 {
		t.Errorf("upload records left: %q", keys)
	}
	if double.Played.Load() == 0 {
		t.Error("the double never played the quirk: the test proves nothing")
	}
}

func readAll(t *testing.T, s sink.Sink, key string) []byte {
	t.Helper()
	rc, err := s.Open(t.Context(), key)
	if err != nil {
		t.Fatalf("Open(%s): %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading %s: %v", key, err)
	}
	return b
}

// recordsParts reports whether an upload record in the bucket names key
// and an acknowledged part.
func recordsParts(env sinktest.S3Env, key string) bool {
	c := env.Client()
	out, err := c.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(env.Bucket), Prefix: aws.String(".artifact-sync/uploads/")})
	if err != nil {
		return false
	}
	for _, o := range out.Contents {
		obj, err := c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(env.Bucket), Key: o.Key})
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(obj.Body)
		obj.Body.Close()
		if bytes.Contains(b, []byte(`"key":"`+key+`"`)) && bytes.Contains(b, []byte(`"parts":[`)) {
			return true
		}
	}
	return false
}
