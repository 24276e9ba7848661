package sink_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/artifact-sync/artifact-sync/sink"
	"github.com/artifact-sync/artifact-sync/sink/sinktest"
)

// TestS3LockExpiryByServersClock: whether a lease has run out is judged by
// the server's clock (its Last-Modified plus the lease time, against the
// Date of its answer), so the clock of the machine that wrote the lease
// does not matter: a lease written by a holder whose clock runs an hour
// ahead is taken over once its lease time has passed on the server, and
// one written by a holder whose clock runs an hour behind is not taken
// over while it is fresh.
func TestS3LockExpiryByServersClock(t *testing.T) {
	env := sinktest.NewS3Bucket(t)
	write := func(prefix, holder string, skew time.Duration, ttl time.Duration) {
		t.Helper()
		now := time.Now().Add(skew).UTC()
		b, _ := json.Marshal(map[string]any{"holder": holder, "since": now, "expires": now.Add(ttl), "ttl_seconds": ttl.Seconds(), "token": "other"})
		_, err := env.Client().PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(env.Bucket),
			Key: aws.String(prefix + "/.artifact-sync/" + sink.DefaultLockName), Body: bytes.NewReader(b)})
		if err != nil {
			t.Fatal(err)
		}
	}

	write("behind", "a holder an hour behind", -time.Hour, 2*time.Minute)
	_, err := env.NewS3(t, "behind").Lock(t.Context(), sink.DefaultLockName, "taker", time.Minute)
	var locked *sink.LockedError
	if !errors.As(err, &locked) || locked.Holder != "a holder an hour behind" {
		t.Errorf("Lock of a lease renewed just now by a holder whose clock is an hour behind: %v; want it held (LockedError)", err)
	}

	write("ahead", "a holder an hour ahead", time.Hour, 2*time.Second)
	start := time.Now()
	var lease sink.Lease
	for time.Since(start) < 10*time.Second {
		lease, err = env.NewS3(t, "ahead").Lock(t.Context(), sink.DefaultLockName, "taker", time.Minute)
		if err == nil || !errors.As(err, &locked) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("Lock of a 2 s lease written by a holder whose clock is an hour ahead, %s later: %v; want it taken over", time.Since(start).Round(time.Second), err)
	}
	// A lease time of 2 s, and a second for the resolution of HTTP dates.
	if d := time.Since(start); d < 2*time.Second || d > 6*time.Second {
		t.Errorf("taken over after %s, want 2-6 s", d.Round(100*time.Millisecond))
	}
	lease.Release(t.Context())
}
