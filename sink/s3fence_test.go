package sink_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/artifact-sync/artifact-sync/sink"
	"github.com/artifact-sync/artifact-sync/sink/sinktest"
)

// fencer is what an S3 lease offers its holder for its own state objects.
type fencer interface {
	FencedOpen(ctx context.Context, key string) (io.ReadCloser, error)
	FencedPut(ctx context.Context, key string, r io.Reader, size int64) error
}

// TestS3FencedPut: a holder's writes through its lease replace only the
// version it last read or wrote. Small and multipart (a streamed
// snapshot) writes go through; a version written behind its back while it
// still holds the lease (a late write of an earlier holder) is replaced
// when the write can be sent again, and left alone when it cannot; once
// another run has taken the lease and written the object, the holder's
// write fails with LostLockError and the other run's version stays.
func TestS3FencedPut(t *testing.T) {
	env := sinktest.NewS3Bucket(t)
	s := env.NewS3(t, "fence")
	lease, err := s.Lock(t.Context(), sink.DefaultLockName, "holder a", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release(context.Background())
	f, ok := lease.(fencer)
	if !ok {
		t.Fatalf("an S3 lease (%T) does not fence its holder's writes", lease)
	}
	read := func() string {
		t.Helper()
		return string(readAll(t, env.NewS3(t, "fence"), "m.json"))
	}
	behind := func(body string) {
		t.Helper()
		if _, err := env.Client().PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(env.Bucket), Key: aws.String("fence/m.json"),
			Body: bytes.NewReader([]byte(body))}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.FencedOpen(t.Context(), "m.json"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("FencedOpen of a missing object: %v", err)
	}
	if err := f.FencedPut(t.Context(), "m.json", bytes.NewReader([]byte("a1")), 2); err != nil || read() != "a1" {
		t.Fatalf("FencedPut of a new object: %v, holds %q", err, read())
	}
	big := sinktest.Data(7, 12<<20)
	if err := f.FencedPut(t.Context(), "m.json", io.MultiReader(bytes.NewReader(big)), -1); err != nil || read() != string(big) {
		t.Fatalf("FencedPut of a 12 MiB stream (multipart): %v", err)
	}

	behind("late write of an earlier holder")
	if err := f.FencedPut(t.Context(), "m.json", bytes.NewReader([]byte("a3")), 2); err != nil || read() != "a3" {
		t.Errorf("FencedPut over a version written behind a holder's back: %v, holds %q; want a3", err, read())
	}
	behind("another late write")
	if err := f.FencedPut(t.Context(), "m.json", io.MultiReader(bytes.NewReader([]byte("a4"))), 2); err == nil || read() != "another late write" {
		t.Errorf("FencedPut of a stream over a version written behind a holder's back: %v, holds %q; want an error and the object left", err, read())
	}

	// Another run takes the lease over and writes its manifest.
	now := time.Now().UTC()
	b, _ := json.Marshal(map[string]any{"holder": "holder b", "since": now, "expires": now.Add(time.Hour), "ttl_seconds": 3600, "token": "b"})
	if _, err := env.Client().PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(env.Bucket), Key: aws.String("fence/.artifact-sync/lock"),
		Body: bytes.NewReader(b)}); err != nil {
		t.Fatal(err)
	}
	behind("b1")
	err = f.FencedPut(t.Context(), "m.json", bytes.NewReader([]byte("a5")), 2)
	var lost *sink.LostLockError
	if !errors.As(err, &lost) || lost.Holder != "holder b" {
		t.Errorf("FencedPut after another run took over and wrote: %v; want a LostLockError naming holder b", err)
	}
	if got := read(); got != "b1" {
		t.Errorf("the other run's version was replaced by %q", got)
	}
}
