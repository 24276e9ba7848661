package sink_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/artifact-sync/artifact-sync/sink"
	"github.com/artifact-sync/artifact-sync/sink/sinktest"
)

func TestParseS3URL(t *testing.T) {
	for _, c := range []struct{ in, bucket, prefix string }{
		{"s3://b", "b", ""},
		{"s3://b/", "b", ""},
		{"s3://b/p", "b", "p"},
		{"s3://b/p/q/", "b", "p/q"},
	} {
		b, p, err := sink.ParseS3URL(c.in)
		if err != nil || b != c.bucket || p != c.prefix {
			t.Errorf("ParseS3URL(%q) = %q, %q, %v; want %q, %q", c.in, b, p, err, c.bucket, c.prefix)
		}
	}
	for _, in := range []string{"s3://", "s3:///p", "/tmp/x", "s3://b/a/../x", "s3://b/a//x"} {
		if _, _, err := sink.ParseS3URL(in); err == nil {
			t.Errorf("ParseS3URL(%q) succeeded", in)
		}
	}
}

// TestS3Metadata checks what a user of the bucket sees: the SHA-256 in
// x-amz-meta-sha256 (also for multipart objects), the artifact's source,
// the Content-Type, and a checksum the server verified.
func TestS3Metadata(t *testing.T) {
	env := sinktest.NewS3Bucket(t)
	s := env.NewS3(t, "meta")
	ctx := t.Context()
	meta := map[string]string{"project": "gh/o/r", "job-number": "42", "path": "dist/ünï.tgz"}
	for _, c := range []struct {
		key       string
		n         int
		known     bool
		wantType  string
		multipart bool
	}{
		{"small.json", 1000, true, "application/json", false},
		{"unknown.tar.gz", 6 << 20, false, "application/gzip", true},
		{"big.bin", sinktest.BigSize, true, "application/octet-stream", true},
	} {
		data := sinktest.Data(3, c.n)
		size := int64(-1)
		if c.known {
			size = int64(c.n)
		}
		sum := sha256.Sum256(data)
		want := hex.EncodeToString(sum[:])
		if _, err := s.Put(ctx, c.key, bytes.NewReader(data), sink.PutOptions{Size: size, Metadata: meta}); err != nil {
			t.Fatal(err)
		}
		info, err := s.Stat(ctx, c.key)
		if err != nil || info.SHA256 != want || info.Size != int64(c.n) {
			t.Errorf("Stat(%q) = %+v, %v; want sha256 %s", c.key, info, err, want)
		}
		head, err := env.Client().HeadObject(ctx, &s3.HeadObjectInput{
			Bucket: aws.String(env.Bucket), Key: aws.String("meta/" + c.key), ChecksumMode: types.ChecksumModeEnabled})
		if err != nil {
			t.Fatal(err)
		}
		if got := aws.ToString(head.ContentType); !strings.HasPrefix(got, c.wantType) {
			t.Errorf("%s: Content-Type %q, want %q", c.key, got, c.wantType)
		}
		if head.Metadata["project"] != "gh/o/r" || head.Metadata["job-number"] != "42" || head.Metadata["path"] == "" {
			t.Errorf("%s: metadata %v lacks the source", c.key, head.Metadata)
		}
		if !c.multipart && aws.ToString(head.ChecksumSHA256) != base64.StdEncoding.EncodeToString(sum[:]) {
			t.Errorf("%s: server recorded SHA256 checksum %q", c.key, aws.ToString(head.ChecksumSHA256))
		}
		if c.multipart && !strings.HasSuffix(aws.ToString(head.ETag), `-2"`) && !strings.HasSuffix(aws.ToString(head.ETag), `-3"`) {
			t.Logf("%s: ETag %s (multipart expected)", c.key, aws.ToString(head.ETag))
		}
	}
}

// TestS3KilledWriter stops uploads midway (cancelled, failing source):
// nothing appears at the key, and the parts S3 acknowledged are kept for
// the next run, which resumes from them (a new sink, as a new process has)
// to the exact object and leaves no multipart upload open.
func TestS3KilledWriter(t *testing.T) {
	env := sinktest.NewS3Bucket(t)
	s := env.NewS3(t, "")
	data := sinktest.Data(4, 23<<20)
	opts := sink.PutOptions{Size: int64(len(data)), Validator: `"v7"`}
	ctx, cancel := context.WithCancel(t.Context())
	r := &cancelAfter{r: bytes.NewReader(data), after: 17 << 20, cancel: cancel, wait: func() bool {
		return partsUp(env, "k/cancelled") > 0
	}}
	if _, err := s.Put(ctx, "k/cancelled", r, opts); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Put: %v", err)
	}
	failing := io.MultiReader(bytes.NewReader(data[:13<<20]), &errAfter{err: io.ErrUnexpectedEOF})
	if _, err := s.Put(t.Context(), "k/failed", failing, opts); err == nil {
		t.Errorf("failing Put succeeded")
	}
	if keys := sinktest.Keys(t, s, ""); len(keys) != 0 {
		t.Errorf("bucket holds %q after killed writes", keys)
	}
	next := env.NewS3(t, "")
	// The cancelled Put read its stream up to the end of the part in which
	// the cancel came (20 MiB); the failed one, whole parts of 13 MiB.
	for key, most := range map[string]int64{"k/cancelled": 20 << 20, "k/failed": 10 << 20} {
		p, err := next.Partial(t.Context(), key)
		if err != nil || p.Size == 0 || p.Size > most || p.Size%(5<<20) != 0 || p.Total != opts.Size || p.Validator != opts.Validator {
			t.Fatalf("Partial(%s) in the next run = %+v, %v; want whole 5 MiB parts, at most %d bytes, total %d, validator %s", key, p, err, most, opts.Size, opts.Validator)
		}
		info, err := next.PutFrom(t.Context(), key, p.Size, bytes.NewReader(data[p.Size:]), opts)
		if err != nil {
			t.Fatalf("PutFrom(%s, %d): %v", key, p.Size, err)
		}
		sum := sha256.Sum256(data)
		if info.SHA256 != hex.EncodeToString(sum[:]) || info.Size != int64(len(data)) {
			t.Errorf("PutFrom(%s) = %+v, want the whole object's size and SHA-256", key, info)
		}
		rc, err := next.Open(t.Context(), key)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(got, data) {
			t.Errorf("%s: %d bytes read back, not what was put", key, len(got))
		}
		if st, err := next.Stat(t.Context(), key); err != nil || st.SHA256 != info.SHA256 {
			t.Errorf("Stat(%s) = %+v, %v; want the SHA-256 (an object tag for a multipart object)", key, st, err)
		}
	}
	if ups := env.OpenUploads(t); len(ups) != 0 {
		t.Errorf("multipart uploads left open: %q", ups)
	}
	if keys := sinktest.Keys(t, s, ".artifact-sync/uploads/"); len(keys) != 0 {
		t.Errorf("upload state left after the uploads completed: %q", keys)
	}
}

type cancelAfter struct {
	r      io.Reader
	n      int
	after  int
	cancel context.CancelFunc
	// wait, if set, is polled before the cancel until it holds (at most
	// 30 s): a slow machine must not cancel before a part went up.
	wait func() bool
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	if c.n >= c.after {
		for deadline := time.Now().Add(30 * time.Second); c.wait != nil && !c.wait() && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		c.cancel()
	}
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// partsUp counts the parts the server holds of key's open multipart uploads.
func partsUp(env sinktest.S3Env, key string) int {
	c := env.Client()
	ctx := context.Background()
	ups, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(env.Bucket)})
	if err != nil {
		return 0
	}
	n := 0
	for _, u := range ups.Uploads {
		if aws.ToString(u.Key) != key {
			continue
		}
		parts, err := c.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String(env.Bucket), Key: u.Key, UploadId: u.UploadId})
		if err == nil {
			n += len(parts.Parts)
		}
	}
	return n
}

type errAfter struct{ err error }

func (e *errAfter) Read([]byte) (int, error) { return 0, e.err }

// TestS3Errors checks that the three ways a destination is unusable come
// out as one line naming the bucket and endpoint and saying what to do.
func TestS3Errors(t *testing.T) {
	env := sinktest.NewS3Bucket(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()

	cases := []struct {
		name string
		cfg  func(*sink.S3Config)
		want string
	}{
		{"missing bucket", func(c *sink.S3Config) { c.Bucket = env.Bucket + "-missing" }, "does not exist"},
		{"bad secret", func(c *sink.S3Config) { c.SecretAccessKey = "wrong" }, "credentials"},
		{"bad key id", func(c *sink.S3Config) { c.AccessKeyID = "nobody" }, "credentials"},
		{"unreachable", func(c *sink.S3Config) { c.Endpoint = closed }, "cannot reach"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cfg := env.Config("p")
			c.cfg(&cfg)
			s, err := sink.NewS3(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			endpoint := cfg.Endpoint
			errs := map[string]error{"Check": s.Check(t.Context())}
			_, errs["Put"] = s.Put(t.Context(), "x", strings.NewReader("x"), sink.PutOptions{Size: 1})
			_, errs["Stat"] = s.Stat(t.Context(), "x")
			for op, err := range errs {
				if op == "Stat" && (c.name == "missing bucket" || c.name == "bad key id") {
					// A HEAD of a key answers 404 without a reason; only
					// Check (which the CLI runs first) can tell why.
					continue
				}
				msg := ""
				if err != nil {
					msg = err.Error()
				}
				if err == nil || !strings.Contains(msg, c.want) || !strings.Contains(msg, cfg.Bucket) ||
					!strings.Contains(msg, endpoint) || strings.Contains(msg, "\n") || strings.Contains(msg, "RequestID") {
					t.Errorf("%s: %q; want one line with %q, the bucket %q and the endpoint %q", op, msg, c.want, cfg.Bucket, endpoint)
				}
				if c.name != "unreachable" && !sink.IsPermanent(err) {
					t.Errorf("%s: %v is not permanent", op, err)
				}
			}
			t.Logf("Check: %v", errs["Check"])
		})
	}
	if err := env.NewS3(t, "p").Check(t.Context()); err != nil {
		t.Errorf("Check of a good bucket: %v", err)
	}
}

// TestS3LockTakeover checks the lease's life on the real server: an
// expired lease is taken over, and a holder whose lease was taken learns
// of it through Lost.
func TestS3LockTakeover(t *testing.T) {
	env := sinktest.NewS3Bucket(t)
	s := env.NewS3(t, "dest")
	ctx := t.Context()
	lockKey := aws.String("dest/.artifact-sync/lock")
	// A holder that died: its lease expired a second ago.
	body, _ := json.Marshal(map[string]any{"holder": "host dead pid 9 run x", "since": time.Now().Add(-time.Hour), "expires": time.Now().Add(-time.Second)})
	if _, err := env.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(env.Bucket), Key: lockKey, Body: bytes.NewReader(body)}); err != nil {
		t.Fatal(err)
	}
	lease, err := s.Lock(ctx, sink.DefaultLockName, "host live pid 1 run y", 2*time.Second)
	if err != nil {
		t.Fatalf("taking over an expired lease: %v", err)
	}
	// Still held after its ttl: renewals work.
	time.Sleep(3 * time.Second)
	var held *sink.LockedError
	if _, err := s.Lock(ctx, sink.DefaultLockName, "other", time.Minute); !errors.As(err, &held) || held.Holder != "host live pid 1 run y" {
		t.Fatalf("Lock while renewed: %v", err)
	}
	select {
	case <-lease.Lost():
		t.Fatalf("lease lost: %v", lease.Err())
	default:
	}
	// Someone overwrites it: the holder finds out at its next renewal.
	if _, err := env.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(env.Bucket), Key: lockKey, Body: strings.NewReader(`{"holder":"thief"}`)}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lease.Lost():
		var lost *sink.LostLockError
		if err := lease.Err(); !errors.As(err, &lost) || !strings.Contains(err.Error(), "lost the lock on s3://"+env.Bucket+"/dest/.artifact-sync/lock: taken over by thief") {
			t.Errorf("Err() = %v; want a *sink.LostLockError naming the new holder", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("lease not reported lost after being overwritten")
	}
	if err := lease.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// Release of a lost lease must not delete the new holder's object.
	if _, err := env.Client().HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(env.Bucket), Key: lockKey}); err != nil {
		t.Errorf("lost lease's Release removed someone else's lock: %v", err)
	}
}

// TestS3LockOfKilledHolder: a run killed with SIGKILL cannot release its
// lease; another run on the same machine takes it over at once instead of
// waiting for it to expire, but never while the holder lives.
func TestS3LockOfKilledHolder(t *testing.T) {
	if os.Getenv("SINK_TEST_LOCK_HOLDER") != "" {
		// The holder: take the lock, say so, and wait to be killed.
		s, err := sink.NewS3(context.Background(), sinktest.S3Env{
			Endpoint: os.Getenv(sinktest.EnvEndpoint), Bucket: os.Getenv("SINK_TEST_LOCK_HOLDER"),
			AccessKey: os.Getenv(sinktest.EnvAccessKey), SecretKey: os.Getenv(sinktest.EnvSecretKey), Region: os.Getenv(sinktest.EnvRegion),
		}.Config("dest"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Lock(context.Background(), sink.DefaultLockName, fmt.Sprintf("holder pid %d", os.Getpid()), time.Minute); err != nil {
			t.Fatal(err)
		}
		fmt.Println("locked")
		time.Sleep(time.Minute)
		return
	}
	env := sinktest.NewS3Bucket(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestS3LockOfKilledHolder$")
	cmd.Env = append(os.Environ(), "SINK_TEST_LOCK_HOLDER="+env.Bucket, sinktest.EnvEndpoint+"="+env.Endpoint,
		sinktest.EnvAccessKey+"="+env.AccessKey, sinktest.EnvSecretKey+"="+env.SecretKey, sinktest.EnvRegion+"="+env.Region)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "locked\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("the holder did not take the lock: %q", line)
	}
	s := env.NewS3(t, "dest")
	_, err = s.Lock(t.Context(), sink.DefaultLockName, "second", time.Minute)
	var le *sink.LockedError
	if !errors.As(err, &le) || !strings.Contains(le.Holder, fmt.Sprint(cmd.Process.Pid)) {
		t.Fatalf("Lock while the holder lives: %v, want a LockedError naming pid %d", err, cmd.Process.Pid)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	start := time.Now()
	lease, err := s.Lock(t.Context(), sink.DefaultLockName, "second", time.Minute)
	if err != nil {
		if runtime.GOOS == "linux" {
			t.Fatalf("Lock after the holder was killed: %v", err)
		}
		t.Skipf("taking over a killed holder's lease is done on Linux only: %v", err)
	}
	t.Logf("took over the lease of the killed holder in %s", time.Since(start))
	if err := lease.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// activeReader counts how many Puts are at work at once: from the first
// Read of their stream until they return.
type activeReader struct {
	r       io.Reader
	started bool
	active  *atomic.Int32
	peak    *atomic.Int32
}

func (a *activeReader) Read(p []byte) (int, error) {
	if !a.started {
		a.started = true
		n := a.active.Add(1)
		for {
			old := a.peak.Load()
			if n <= old || a.peak.CompareAndSwap(old, n) {
				break
			}
		}
	}
	return a.r.Read(p)
}

// done ends the count of a reader whose Put has returned.
func (a *activeReader) done() {
	if a.started {
		a.active.Add(-1)
	}
}

// TestS3MemoryLimit: Puts together never buffer more than MemoryLimit, so a
// pull with many transfers at once cannot run the machine out of memory;
// a Put that needs more than the limit still runs, alone.
func TestS3MemoryLimit(t *testing.T) {
	env := sinktest.NewS3Bucket(t)
	cfg := env.Config("mem")
	cfg.MemoryLimit = 6 << 20 // less than one multipart upload's 7 × 5 MiB
	s, err := sink.NewS3(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var active, peak atomic.Int32
	const size, puts = 12 << 20, 6
	g, ctx := errgroup.WithContext(t.Context())
	for i := range puts {
		g.Go(func() error {
			data := bytes.Repeat([]byte{byte('a' + i)}, size)
			r := &activeReader{r: bytes.NewReader(data), active: &active, peak: &peak}
			info, err := s.Put(ctx, fmt.Sprintf("big-%d", i), r, sink.PutOptions{Size: size})
			r.done()
			if err == nil && info.Size != size {
				err = fmt.Errorf("put %d bytes, want %d", info.Size, size)
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	// One at a time; the count may overlap by one while a Put that has
	// released its memory returns and the next one starts reading.
	if p := peak.Load(); p > 2 {
		t.Errorf("%d of %d uploads buffered at once within a limit that fits one", p, puts)
	}

	// While a large upload holds all the memory, small objects and the
	// manifest's writes still go through: a journal queued behind large
	// uploads would stall every transfer waiting for its record.
	pr, pw := io.Pipe()
	bigDone := make(chan error, 1)
	go func() {
		_, err := s.Put(t.Context(), "held", pr, sink.PutOptions{Size: size})
		bigDone <- err
	}()
	pw.Write(make([]byte, 1<<20)) // the big Put has its memory and is reading
	for _, key := range []string{".artifact-sync/manifest/journal-1.jsonl", "small.txt"} {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		_, err := s.Put(ctx, key, strings.NewReader("{}\n"), sink.PutOptions{Size: 3})
		cancel()
		if err != nil {
			t.Errorf("Put %s while a large upload holds the memory: %v", key, err)
		}
	}
	pw.Write(make([]byte, size-1<<20))
	pw.Close()
	if err := <-bigDone; err != nil {
		t.Fatal(err)
	}
	for i := range puts {
		rc, err := s.Open(t.Context(), fmt.Sprintf("big-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(got, bytes.Repeat([]byte{byte('a' + i)}, size)) {
			t.Errorf("big-%d: %d bytes read back, not what was put", i, len(got))
		}
	}
}
