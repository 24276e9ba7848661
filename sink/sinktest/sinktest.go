package sinktest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/artifact-sync/artifact-sync/sink"
)

// BigSize is the size of the suite's largest object: more than two parts
// of the S3 sink's minimum part size (5 MiB), so an S3 sink configured
// with that part size is exercised in multipart.
const BigSize = 11<<20 + 12345

// Run checks the sink contract against sinks made by newSink, which must
// return a new, empty sink (or an empty view of one, such as a fresh
// prefix) each time it is called. Subtests run in parallel.
func Run(t *testing.T, newSink func(t *testing.T) sink.Sink) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s sink.Sink)
	}{
		{"RoundTrip", testRoundTrip},
		{"GoodKeys", testGoodKeys},
		{"Overwrite", testOverwrite},
		{"NotExist", testNotExist},
		{"BadKeys", testBadKeys},
		{"FailingReader", testFailingReader},
		{"Cancel", testCancel},
		{"DeclaredSize", testDeclaredSize},
		{"Concurrent", testConcurrent},
		{"List", testList},
		{"Delete", testDelete},
		{"Resume", testResume},
		{"Lock", testLock},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newSink(t))
		})
	}
}

// Data returns n bytes that differ for different seeds.
func Data(seed uint64, n int) []byte {
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24), 1})
	b := make([]byte, n)
	r.Read(b)
	return b
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// put writes data at key, failing the test on error.
func put(t *testing.T, s sink.Sink, key string, data []byte) sink.Info {
	t.Helper()
	info, err := s.Put(t.Context(), key, bytes.NewReader(data), sink.PutOptions{Size: int64(len(data))})
	if err != nil {
		t.Fatalf("Put(%q, %d bytes): %v", key, len(data), err)
	}
	return info
}

// check asserts that key holds exactly want, by Stat and by Open.
func check(t *testing.T, s sink.Sink, key string, want []byte) {
	t.Helper()
	ctx := t.Context()
	info, err := s.Stat(ctx, key)
	if err != nil {
		t.Fatalf("Stat(%q): %v", key, err)
	}
	if info.Key != key || info.Size != int64(len(want)) {
		t.Errorf("Stat(%q) = key %q size %d, want size %d", key, info.Key, info.Size, len(want))
	}
	if info.SHA256 != "" && info.SHA256 != sum(want) {
		t.Errorf("Stat(%q).SHA256 = %s, want %s", key, info.SHA256, sum(want))
	}
	rc, err := s.Open(ctx, key)
	if err != nil {
		t.Fatalf("Open(%q): %v", key, err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading %q: %v", key, err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("content of %q: got %d bytes (sha256 %s), want %d bytes (sha256 %s)", key, len(got), sum(got), len(want), sum(want))
	}
}

// absent asserts that nothing is at key.
func absent(t *testing.T, s sink.Sink, key string) {
	t.Helper()
	if info, err := s.Stat(t.Context(), key); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat(%q) = %+v, %v; want an error matching fs.ErrNotExist", key, info, err)
	}
	rc, err := s.Open(t.Context(), key)
	if err == nil {
		rc.Close()
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open(%q) error = %v; want one matching fs.ErrNotExist", key, err)
	}
}

func testRoundTrip(t *testing.T, s sink.Sink) {
	for _, n := range []int{0, 1, 1000, BigSize} {
		for _, known := range []bool{true, false} {
			key := fmt.Sprintf("rt/%d-%v.bin", n, known)
			data := Data(uint64(n), n)
			opts := sink.PutOptions{Size: -1, Metadata: map[string]string{"path": "dist/" + key, "job": "12"}, Validator: `"etag"`}
			if known {
				opts.Size = int64(n)
			}
			info, err := s.Put(t.Context(), key, bytes.NewReader(data), opts)
			if err != nil {
				t.Fatalf("Put(%q, %d bytes, size known %v): %v", key, n, known, err)
			}
			if info.Key != key || info.Size != int64(n) || info.SHA256 != sum(data) {
				t.Errorf("Put(%q) = %+v, want size %d sha256 %s", key, info, n, sum(data))
			}
			check(t, s, key, data)
		}
	}
}

func testGoodKeys(t *testing.T, s sink.Sink) {
	for i, key := range []string{"a..b", "..a", "a.", ".hidden", "with space/x y.txt", "ünïcødé/日本.txt", "deep/a/b/c/d/e.f", "a-b_c~d@e+f=g,h;i"} {
		data := Data(uint64(i), 10+i)
		put(t, s, key, data)
		check(t, s, key, data)
	}
}

func testOverwrite(t *testing.T, s sink.Sink) {
	a, b := Data(1, 3000), Data(2, 100)
	put(t, s, "ow/x", a)
	put(t, s, "ow/x", b)
	check(t, s, "ow/x", b)
}

func testNotExist(t *testing.T, s sink.Sink) {
	absent(t, s, "nope")
	absent(t, s, "no/such/key")
	put(t, s, "dir/file", []byte("x"))
	absent(t, s, "dir") // a "directory" is not an object
	absent(t, s, "dir/file/below")
	if err := s.Delete(t.Context(), "nope"); err != nil {
		t.Errorf("Delete of a missing key: %v", err)
	}
}

// BadKeys are keys every sink must refuse.
var BadKeys = []string{
	"", "/", "/abs", "/abs/x", "a/../../x", "..", "../x", "a/..", "x/../y",
	".", "./a", "a/./b", "a/.", "a//b", "//a", "a/", "a/b/",
	"a\x00b", "\x00", `a\b`, `..\..\x`, `\abs`, `a\`,
}

// forbidRead fails the test if a sink reads the body of a refused Put.
type forbidRead struct{ t *testing.T }

func (r forbidRead) Read([]byte) (int, error) {
	r.t.Error("Put read the body of a key it must refuse")
	return 0, io.EOF
}

func testBadKeys(t *testing.T, s sink.Sink) {
	ctx := t.Context()
	rs, _ := s.(sink.Resumer)
	for _, key := range BadKeys {
		if err := sink.ValidKey(key); err == nil {
			t.Errorf("ValidKey(%q) = nil", key)
		}
		want := func(op string, err error) {
			t.Helper()
			if !errors.Is(err, sink.ErrInvalidKey) || !sink.IsPermanent(err) {
				t.Errorf("%s(%q) error = %v; want a permanent error matching sink.ErrInvalidKey", op, key, err)
			}
		}
		_, err := s.Put(ctx, key, forbidRead{t}, sink.PutOptions{Size: -1})
		want("Put", err)
		_, err = s.Stat(ctx, key)
		want("Stat", err)
		rc, err := s.Open(ctx, key)
		if err == nil {
			rc.Close()
		}
		want("Open", err)
		want("Delete", s.Delete(ctx, key))
		if rs != nil {
			_, err = rs.Partial(ctx, key)
			want("Partial", err)
			_, err = rs.PutFrom(ctx, key, 0, forbidRead{t}, sink.PutOptions{Size: -1})
			want("PutFrom", err)
			want("DiscardPartial", rs.DiscardPartial(ctx, key))
		}
	}
	for info, err := range s.List(ctx, "") {
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		t.Errorf("List found %q after only refused writes", info.Key)
	}
}

var errBoom = errors.New("boom: source connection reset")

// FailingReaders returns readers that deliver part of data and then fail,
// as a dropped download does.
func failingReaders(data []byte) map[string]func() io.Reader {
	half := len(data) / 2
	return map[string]func() io.Reader{
		"ErrReader": func() io.Reader {
			return io.MultiReader(bytes.NewReader(data[:half]), iotest.ErrReader(errBoom))
		},
		"TimeoutReader": func() io.Reader {
			return iotest.TimeoutReader(io.MultiReader(bytes.NewReader(data[:half]), bytes.NewReader(data[half:])))
		},
		"UnexpectedEOF": func() io.Reader {
			return io.MultiReader(iotest.HalfReader(bytes.NewReader(data[:half])), iotest.ErrReader(io.ErrUnexpectedEOF))
		},
	}
}

func testFailingReader(t *testing.T, s sink.Sink) {
	for _, n := range []int{1000, BigSize} {
		data := Data(7, n)
		for name, newReader := range failingReaders(data) {
			for _, known := range []bool{true, false} {
				key := fmt.Sprintf("fail/%s-%d-%v", name, n, known)
				size := int64(-1)
				if known {
					size = int64(n)
				}
				_, err := s.Put(t.Context(), key, newReader(), sink.PutOptions{Size: size})
				if err == nil {
					t.Fatalf("Put(%q) from a failing reader succeeded", key)
				}
				absent(t, s, key)
			}
		}
	}
	// A failed overwrite leaves the old object whole.
	old := Data(8, 5000)
	put(t, s, "fail/keep", old)
	_, err := s.Put(t.Context(), "fail/keep", failingReaders(Data(9, BigSize))["ErrReader"](), sink.PutOptions{Size: BigSize})
	if !errors.Is(err, errBoom) {
		t.Errorf("Put from a failing reader: error %v, want one matching the reader's", err)
	}
	check(t, s, "fail/keep", old)
}

// cancelReader delivers data and cancels its context after after bytes,
// then keeps delivering, as a stream that does not watch the context does.
type cancelReader struct {
	r      io.Reader
	after  int
	n      int
	cancel context.CancelFunc
}

func (c *cancelReader) Read(p []byte) (int, error) {
	if c.n >= c.after {
		c.cancel()
	}
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func testCancel(t *testing.T, s sink.Sink) {
	for _, n := range []int{100000, BigSize} {
		data := Data(10, n)
		key := fmt.Sprintf("cancel/%d", n)
		ctx, cancel := context.WithCancel(t.Context())
		_, err := s.Put(ctx, key, &cancelReader{r: bytes.NewReader(data), after: n / 2, cancel: cancel}, sink.PutOptions{Size: int64(n)})
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Put(%q) cancelled midway: error %v, want one matching context.Canceled", key, err)
		}
		absent(t, s, key)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Put(ctx, "cancel/before", bytes.NewReader([]byte("x")), sink.PutOptions{Size: 1}); err == nil {
		t.Errorf("Put with a cancelled context succeeded")
	}
	absent(t, s, "cancel/before")
}

func testDeclaredSize(t *testing.T, s sink.Sink) {
	for _, n := range []int{0, 1000, BigSize} {
		data := Data(11, n+1)
		cases := []struct {
			name    string
			body    []byte
			size    int64
			wantErr error
		}{
			{"long", data[:n+1], int64(n), sink.ErrLongStream},
			{"short", data[:n], int64(n + 1), sink.ErrShortStream},
		}
		for _, c := range cases {
			key := fmt.Sprintf("size/%s-%d", c.name, n)
			_, err := s.Put(t.Context(), key, bytes.NewReader(c.body), sink.PutOptions{Size: c.size})
			if !errors.Is(err, c.wantErr) {
				t.Errorf("Put(%q) of %d bytes declared as %d: error %v, want %v", key, len(c.body), c.size, err, c.wantErr)
			}
			absent(t, s, key)
		}
	}
}

func testConcurrent(t *testing.T, s sink.Sink) {
	const workers = 32
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			n := 100 * i
			if i%8 == 0 {
				n = 1 << 20
			}
			data := Data(uint64(100+i), n)
			key := fmt.Sprintf("conc/%02d/obj", i)
			info, err := s.Put(t.Context(), key, bytes.NewReader(data), sink.PutOptions{Size: -1})
			if err != nil {
				t.Errorf("Put(%q): %v", key, err)
				return
			}
			if info.SHA256 != sum(data) {
				t.Errorf("Put(%q).SHA256 = %s, want %s", key, info.SHA256, sum(data))
			}
		})
	}
	wg.Wait()
	for i := range workers {
		n := 100 * i
		if i%8 == 0 {
			n = 1 << 20
		}
		check(t, s, fmt.Sprintf("conc/%02d/obj", i), Data(uint64(100+i), n))
	}
}

// Keys lists the keys s yields for prefix, sorted.
func Keys(t testing.TB, s sink.Sink, prefix string) []string {
	t.Helper()
	var keys []string
	for info, err := range s.List(context.Background(), prefix) {
		if err != nil {
			t.Fatalf("List(%q): %v", prefix, err)
		}
		keys = append(keys, info.Key)
	}
	slices.Sort(keys)
	return keys
}

func testList(t *testing.T, s sink.Sink) {
	for _, k := range []string{"list/a", "list/b/c", "list/bb", "list/b/d/e", "other/x", "top"} {
		put(t, s, k, []byte(k))
	}
	put(t, s, ".artifact-sync/manifest", []byte("{}"))
	for _, c := range []struct {
		prefix string
		want   []string
	}{
		{"", []string{"list/a", "list/b/c", "list/b/d/e", "list/bb", "other/x", "top"}},
		{"list/", []string{"list/a", "list/b/c", "list/b/d/e", "list/bb"}},
		{"list/b", []string{"list/b/c", "list/b/d/e", "list/bb"}},
		{"list/b/", []string{"list/b/c", "list/b/d/e"}},
		{"lis", []string{"list/a", "list/b/c", "list/b/d/e", "list/bb"}},
		{"none/", nil},
		{"to", []string{"top"}},
		{".artifact-sync/", []string{".artifact-sync/manifest"}},
	} {
		if got := Keys(t, s, c.prefix); !slices.Equal(got, c.want) {
			t.Errorf("List(%q) = %q, want %q", c.prefix, got, c.want)
		}
	}
	for info, err := range s.List(t.Context(), "list/a") {
		if err != nil || info.Size != int64(len("list/a")) {
			t.Errorf("List(list/a) yielded %+v, %v; want size %d", info, err, len("list/a"))
		}
	}
	// Stopping early must not panic or hang.
	for range s.List(t.Context(), "") {
		break
	}
}

func testDelete(t *testing.T, s sink.Sink) {
	put(t, s, "del/a/b", []byte("1"))
	put(t, s, "del/c", []byte("2"))
	if err := s.Delete(t.Context(), "del/a/b"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	absent(t, s, "del/a/b")
	check(t, s, "del/c", []byte("2"))
	if got := Keys(t, s, "del/"); !slices.Equal(got, []string{"del/c"}) {
		t.Errorf("List after Delete = %q", got)
	}
	if err := s.Delete(t.Context(), "del/a/b"); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	put(t, s, "del/a/b", []byte("3")) // its directory may have gone
	check(t, s, "del/a/b", []byte("3"))
}

// testResume checks Resumer. A sink may keep less than a failed write
// received (S3 keeps whole parts that the server acknowledged, so a write
// that fails within its first part keeps nothing), but what Partial reports
// must be a prefix of the object from which PutFrom completes it, and the
// biggest object (more than two S3 parts) must keep something.
func testResume(t *testing.T, s sink.Sink) {
	rs, ok := s.(sink.Resumer)
	if !ok {
		t.Skipf("%T does not implement sink.Resumer", s)
	}
	ctx := t.Context()
	for _, n := range []int{10000, BigSize} {
		data := Data(20, n)
		key := fmt.Sprintf("resume/%d.bin", n)
		opts := sink.PutOptions{Size: int64(n), Validator: `"v1"`}
		if p, err := rs.Partial(ctx, key); err != nil || p.Size != 0 || p.Validator != "" {
			t.Fatalf("Partial before any write = %+v, %v; want none", p, err)
		}
		cut := n / 2
		_, err := s.Put(ctx, key, io.MultiReader(bytes.NewReader(data[:cut]), iotest.ErrReader(errBoom)), opts)
		if !errors.Is(err, errBoom) {
			t.Fatalf("failing Put: %v", err)
		}
		absent(t, s, key)
		p, err := rs.Partial(ctx, key)
		if err != nil || p.Size < 0 || p.Size > int64(cut) || (p.Size > 0 && (p.Validator != opts.Validator || p.Total != int64(n))) {
			t.Fatalf("Partial after a failed Put of %d bytes = %+v, %v; want at most %d bytes, total %d, validator %q", cut, p, err, cut, n, opts.Validator)
		}
		if n == BigSize && p.Size == 0 {
			t.Fatalf("Partial after a failed Put of %d bytes kept nothing", cut)
		}
		size := p.Size
		if size == 0 {
			if _, err := rs.PutFrom(ctx, key, 0, bytes.NewReader(data), opts); err != nil {
				t.Fatal(err)
			}
			check(t, s, key, data)
			continue
		}
		// Resuming past what is kept is refused.
		if _, err := rs.PutFrom(ctx, key, size+1, bytes.NewReader(data[size+1:]), opts); err == nil {
			t.Errorf("PutFrom beyond the partial size succeeded")
		}
		// A resume that fails again keeps at least what it had.
		more := int(size) + n/4
		_, err = rs.PutFrom(ctx, key, size, io.MultiReader(bytes.NewReader(data[size:more]), iotest.ErrReader(errBoom)), opts)
		if !errors.Is(err, errBoom) {
			t.Fatalf("failing PutFrom: %v", err)
		}
		if p, _ := rs.Partial(ctx, key); p.Size < size || p.Size > int64(more) {
			t.Fatalf("Partial after a failed PutFrom = %d, want between %d and %d", p.Size, size, more)
		}
		// Resume from before the end of the partial: the sink either keeps
		// that much and drops the rest, or refuses (S3 cannot cut a part).
		off := size - 10
		info, err := rs.PutFrom(ctx, key, off, bytes.NewReader(data[off:]), opts)
		if err != nil {
			t.Logf("PutFrom(%d) inside the partial: %v", off, err)
			absent(t, s, key)
			p, _ := rs.Partial(ctx, key)
			info, err = rs.PutFrom(ctx, key, p.Size, bytes.NewReader(data[p.Size:]), opts)
		}
		if err != nil {
			t.Fatalf("PutFrom: %v", err)
		}
		if info.Size != int64(n) || info.SHA256 != sum(data) {
			t.Errorf("PutFrom = %+v, want size %d sha256 %s of the whole object", info, n, sum(data))
		}
		check(t, s, key, data)
		if p, err := rs.Partial(ctx, key); err != nil || p.Size != 0 {
			t.Errorf("Partial after a finished PutFrom = %d, %v; want 0", p.Size, err)
		}
	}
	// DiscardPartial drops it; a resume with nothing kept fails.
	data := Data(21, BigSize)
	s.Put(ctx, "resume/discard", io.MultiReader(bytes.NewReader(data[:BigSize/2]), iotest.ErrReader(errBoom)), sink.PutOptions{Size: BigSize})
	p, _ := rs.Partial(ctx, "resume/discard")
	if p.Size == 0 {
		t.Fatalf("Partial = 0 after a failed Put of %d bytes", BigSize/2)
	}
	if err := rs.DiscardPartial(ctx, "resume/discard"); err != nil {
		t.Fatal(err)
	}
	if p, _ := rs.Partial(ctx, "resume/discard"); p.Size != 0 {
		t.Errorf("Partial after DiscardPartial = %d", p.Size)
	}
	if _, err := rs.PutFrom(ctx, "resume/discard", p.Size, bytes.NewReader(data[p.Size:]), sink.PutOptions{Size: BigSize}); err == nil {
		t.Errorf("PutFrom with nothing kept succeeded")
	}
	absent(t, s, "resume/discard")
	// PutFrom at 0 is a plain Put; a declared size counts the kept prefix.
	if _, err := rs.PutFrom(ctx, "resume/zero", 0, bytes.NewReader(data[:5000]), sink.PutOptions{Size: 5000}); err != nil {
		t.Fatal(err)
	}
	check(t, s, "resume/zero", data[:5000])
	// A successful Put drops an older partial.
	s.Put(ctx, "resume/replaced", io.MultiReader(bytes.NewReader(data[:BigSize/2]), iotest.ErrReader(errBoom)), sink.PutOptions{Size: BigSize})
	put(t, s, "resume/replaced", data[:5000])
	if p, _ := rs.Partial(ctx, "resume/replaced"); p.Size != 0 {
		t.Errorf("Partial after a successful Put = %d, want 0", p.Size)
	}
	for _, k := range Keys(t, s, "") {
		if k != "resume/zero" && k != "resume/replaced" && k != "resume/10000.bin" && k != fmt.Sprintf("resume/%d.bin", BigSize) {
			t.Errorf("List shows %q; partial writes must not be listed", k)
		}
	}
}

func testLock(t *testing.T, s sink.Sink) {
	lk, ok := s.(sink.Locker)
	if !ok {
		t.Skipf("%T does not implement sink.Locker", s)
	}
	ctx := t.Context()
	const holder = "host test pid 1 run first"
	lease, err := lk.Lock(ctx, "suite-lock", holder, time.Minute)
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	_, err = lk.Lock(ctx, "suite-lock", "host test pid 2 run second", time.Minute)
	var le *sink.LockedError
	if !errors.As(err, &le) || le.Holder != holder || le.Name != "suite-lock" {
		t.Fatalf("second Lock: error %v, want a *sink.LockedError naming %q", err, holder)
	}
	// The message names the holder: by its process and host where the
	// sink records them, otherwise as the holder said.
	name := holder
	if le.PID != 0 {
		name = fmt.Sprintf("pid %d", le.PID)
	}
	if msg := err.Error(); !bytes.Contains([]byte(msg), []byte(name)) {
		t.Errorf("LockedError message %q does not name the holder (%s)", msg, name)
	}
	// Another name is another lock.
	other, err := lk.Lock(ctx, "suite-other", "x", time.Minute)
	if err != nil {
		t.Fatalf("Lock of another name: %v", err)
	}
	other.Release(ctx)
	select {
	case <-lease.Lost():
		t.Fatalf("lease lost while held: %v", lease.Err())
	default:
	}
	if err := lease.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if err := lease.Release(ctx); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	if _, err := lk.Lock(ctx, "bad/name", "x", time.Minute); err == nil {
		t.Errorf("Lock accepted a name with a slash")
	}

	// Racing takers: exactly one wins.
	const takers = 16
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		winners []sink.Lease
	)
	for i := range takers {
		wg.Go(func() {
			l, err := lk.Lock(ctx, "suite-lock", fmt.Sprintf("taker %d", i), time.Minute)
			if err != nil {
				var locked *sink.LockedError
				if !errors.As(err, &locked) {
					t.Errorf("taker %d: %v, want a *sink.LockedError", i, err)
				}
				return
			}
			mu.Lock()
			winners = append(winners, l)
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(winners) != 1 {
		t.Fatalf("%d of %d racing takers got the lock, want exactly 1", len(winners), takers)
	}
	if err := winners[0].Release(ctx); err != nil {
		t.Fatal(err)
	}
	l, err := lk.Lock(ctx, "suite-lock", holder, time.Minute)
	if err != nil {
		t.Fatalf("Lock after Release: %v", err)
	}
	l.Release(ctx)
}
