package sync_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci"
	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
	"github.com/artifact-sync/artifact-sync/manifest"
	"github.com/artifact-sync/artifact-sync/sink"
	ccsync "github.com/artifact-sync/artifact-sync/sync"
)

// ignoreIfRange is the transport of a proxy that drops If-Range: the
// server then answers every range with 206 and the bytes of whatever
// version it holds, as some caches and proxies do.
type ignoreIfRange struct{ next http.RoundTripper }

func (t ignoreIfRange) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("If-Range") != "" {
		r = r.Clone(r.Context())
		r.Header.Del("If-Range")
	}
	return t.next.RoundTrip(r)
}

// clientIgnoringIfRange is a client whose requests lose If-Range on the
// way to host.
func clientIgnoringIfRange(t *testing.T, host string) *circleci.Client {
	t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	c, err := circleci.New(circleci.Config{
		Host: host, Token: token, IdleTimeout: 2 * time.Second,
		HTTPClient: &http.Client{Transport: ignoreIfRange{tr}},
		Retry:      circleci.RetryPolicy{MaxAttempts: 5, InitialInterval: time.Millisecond, MaxInterval: 10 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// wantRecorded checks that dest's manifest records a, and only a, as its
// current bytes: the run reports what it wrote.
func wantRecorded(t *testing.T, dest *sink.Local, a *circlecitest.Artifact) {
	t.Helper()
	m, err := manifest.Open(t.Context(), &ccsync.SinkStore{Sink: dest, Prefix: ccsync.ManifestPrefix}, manifest.Options{Destination: dest.String()})
	if err != nil {
		t.Fatalf("the manifest does not load: %v", err)
	}
	defer m.Close(context.WithoutCancel(t.Context()))
	var n int
	for e := range m.Entries() {
		n++
		if e.SHA256 != a.SHA256() || e.ETag != a.ETag() || e.Size != a.Size() {
			t.Errorf("the manifest records %s as %d bytes, SHA-256 %s, ETag %s; the artifact is %d bytes, %s, %s",
				e.Key, e.Size, e.SHA256, e.ETag, a.Size(), a.SHA256(), a.ETag())
		}
	}
	if n != 1 {
		t.Errorf("the manifest holds %d entries, want 1", n)
	}
}

// Bytes kept of one version are never completed with the bytes of
// another: when a proxy drops If-Range and the artifact was replaced by one
// of the same size since, the resumed 206 names the same range and total,
// and only its ETag tells the versions apart. The kept bytes are dropped and
// the new version fetched whole, over one connection or several.
func TestResumeNeverStitchesTwoVersions(t *testing.T) {
	t.Run("single stream", func(t *testing.T) {
		const size = 300_000
		w, a := bigWorld(size)
		srv := circlecitest.Start(t, w, circlecitest.Options{Token: token})
		client := clientIgnoringIfRange(t, srv.URL)
		dest, dir := localSink(t)
		keepPartial(t, dest, a, content(t, a), size/2, size, a.ETag())
		a.Replace(size)
		sum, err := ccsync.Pull(t.Context(), client, client, slug, &ccsync.Selection{}, dest, pullOpts())
		if err != nil || sum.Failed != 0 || sum.Transferred != 1 {
			t.Fatalf("pull: %+v, %v", sum, err)
		}
		checkTree(t, dir, []*circlecitest.Artifact{a})
		wantRecorded(t, dest, a)
	})

	t.Run("ranges kept by an interrupted run", func(t *testing.T) {
		const size = 8 << 20
		w, a := bigWorld(size)
		srv := circlecitest.Start(t, w, circlecitest.Options{Token: token, Bandwidth: 2 << 20})
		client := clientIgnoringIfRange(t, srv.URL)
		dest, dir := localSink(t)
		opts := pullOpts()
		opts.MultiThreadStreams = 4
		opts.MultiThreadCutoff = 1 << 20
		ctx, cancel := context.WithCancel(t.Context())
		go func() {
			for srv.BytesServed() < size/3 {
				time.Sleep(2 * time.Millisecond)
			}
			cancel()
		}()
		if _, err := ccsync.Pull(ctx, client, client, slug, &ccsync.Selection{}, dest, opts); err == nil {
			t.Fatal("the interrupted pull reported success")
		}
		if p, _ := dest.Partial(t.Context(), defaultKey(a)); len(p.Spans) == 0 {
			t.Fatalf("the interrupted run kept no ranges (%+v): the test proves nothing", p)
		}
		a.Replace(size)
		sum, err := ccsync.Pull(t.Context(), client, client, slug, &ccsync.Selection{}, dest, opts)
		if err != nil || sum.Failed != 0 || sum.Transferred != 1 {
			t.Fatalf("rerun: %+v, %v", sum, err)
		}
		checkTree(t, dir, []*circlecitest.Artifact{a})
		wantRecorded(t, dest, a)
	})

	t.Run("replaced during a download over several connections", func(t *testing.T) {
		const size = 8 << 20
		w, a := bigWorld(size)
		var replaced atomic.Bool
		// 2 MiB/s per connection, as above: at 4 MiB/s a busy machine's
		// first measurements could leave too little to split for (seen
		// once at a load average of 10).
		srv := circlecitest.Start(t, w, circlecitest.Options{Token: token, Bandwidth: 2 << 20,
			Faults: func(c circlecitest.Call) circlecitest.Fault {
				// The first range request of the other streams finds the
				// artifact replaced.
				if c.Download && c.Request.Header.Get("Range") != "" && replaced.CompareAndSwap(false, true) {
					a.Replace(size)
				}
				return circlecitest.Fault{}
			}})
		client := clientIgnoringIfRange(t, srv.URL)
		dest, dir := localSink(t)
		opts := pullOpts()
		opts.MultiThreadStreams = 4
		opts.MultiThreadCutoff = 1 << 20
		sum, err := ccsync.Pull(t.Context(), client, client, slug, &ccsync.Selection{}, dest, opts)
		if err != nil || sum.Failed != 0 || sum.Transferred != 1 {
			t.Fatalf("pull: %+v, %v", sum, err)
		}
		if !replaced.Load() {
			t.Fatal("no range was requested: the test proves nothing")
		}
		checkTree(t, dir, []*circlecitest.Artifact{a})
		wantRecorded(t, dest, a)
	})
}
