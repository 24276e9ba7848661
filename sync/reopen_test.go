package sync_test

import (
	"bytes"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
	"github.com/artifact-sync/artifact-sync/sink"
	"github.com/artifact-sync/artifact-sync/sink/sinktest"
	ccsync "github.com/artifact-sync/artifact-sync/sync"
)

// cutWorld is one job with n artifacts of size bytes each.
func cutWorld(n int, size int64) (*circlecitest.World, []*circlecitest.Artifact) {
	w := circlecitest.NewWorld()
	j := w.AddProject("gh/acme/widgets", "main").AddPipeline("main").AddWorkflow("build").AddJob("big", circlecitest.JobOptions{})
	var arts []*circlecitest.Artifact
	for i := range n {
		arts = append(arts, j.AddArtifact(0, fmt.Sprintf("part-%d.bin", i), size))
	}
	return w, arts
}

// cutEvery resets every download's connection after n bytes of its body.
// The server paces its bytes (bandwidth), as a real network does, so that
// a reader that keeps up has every byte sent before the reset: unpaced, the
// fake would write a MiB into loopback buffers and reset at once, and the
// reset discards whatever the client had not read yet, whoever the client.
func cutEvery(w *circlecitest.World, n, bandwidth int64) circlecitest.Options {
	return circlecitest.Options{Token: token, Bandwidth: bandwidth,
		Faults: circlecitest.OnDownloads(circlecitest.Always(circlecitest.CutFault(n)))}
}

// A download over one connection that is cut every MiB goes on, within the
// run, from the last byte it received: the server sends each byte about
// once. Each retry used to go back to what the destination had made
// durable and hash it all again first, while the next answer's bytes
// waited in buffers that the next cut threw away: later attempts kept
// almost nothing, and the artifact failed or was served many times over.
func TestCutDownloadGoesOnFromLastByte(t *testing.T) {
	for _, tc := range []struct {
		name      string
		n         int
		size      int64
		bandwidth int64 // per connection
	}{
		{"one large artifact", 1, 64 << 20, 64 << 20},
		{"four artifacts at once", 4, 32 << 20, 24 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, arts := cutWorld(tc.n, tc.size)
			srv := circlecitest.Start(t, w, cutEvery(w, 1<<20, tc.bandwidth))
			client := newClient(t, srv.URL)
			dest, dir := localSink(t)
			opts := pullOpts()
			opts.MultiThreadStreams = 1
			sum, err := ccsync.Pull(t.Context(), client, client, slug, &ccsync.Selection{}, dest, opts)
			if err != nil || sum.Failed != 0 || sum.Transferred != tc.n {
				t.Fatalf("pull: %+v, %v", sum, err)
			}
			checkTree(t, dir, arts)
			total := int64(tc.n) * tc.size
			served := srv.BytesServed()
			t.Logf("served %.3fx the artifacts", float64(served)/float64(total))
			if served > total*11/10 {
				t.Errorf("served %d bytes for %d bytes of artifacts (%.2fx), want at most 1.1x", served, total, float64(served)/float64(total))
			}
		})
	}
}

// A connection cut every 64 KiB still delivers the artifacts: every
// attempt keeps a few KiB more, and that renews the attempts. They used
// to be renewed by a MiB only, so five attempts in a row of 64 KiB each
// failed the artifact.
func TestDownloadCutEvery64KiBFinishes(t *testing.T) {
	w, arts := cutWorld(3, 1<<20+12345)
	srv := circlecitest.Start(t, w, cutEvery(w, 64<<10, 16<<20))
	client := newClient(t, srv.URL)
	dest, dir := localSink(t)
	opts := pullOpts()
	opts.MultiThreadStreams = 1
	sum, err := ccsync.Pull(t.Context(), client, client, slug, &ccsync.Selection{}, dest, opts)
	if err != nil || sum.Failed != 0 || sum.Transferred != len(arts) {
		t.Fatalf("pull: %+v, %v", sum, err)
	}
	checkTree(t, dir, arts)
}

// To S3, a cut connection goes on as well: the multipart upload and the
// part it is filling never see the break. A cut every 4 MiB, shorter than
// a part, used to fail the upload with no part acknowledged, so every
// attempt started over and the artifact failed. The bytes served are only
// logged: the S3 sink stops reading for its round trips (the upload's
// state, CreateMultipartUpload, a part when its buffers are full), and the
// fake's reset throws away what waited in the socket meanwhile, so they
// follow S3's latency (1.0x here, up to 1.6x under -race).
func TestCutDownloadToS3GoesOn(t *testing.T) {
	env := sinktest.NewS3Bucket(t)
	const size = 24<<20 + 4321
	w, arts := cutWorld(1, size)
	srv := circlecitest.Start(t, w, cutEvery(w, 4<<20, 16<<20))
	client := newClient(t, srv.URL)
	dest := env.NewS3(t, "mirror")
	sum, err := ccsync.Pull(t.Context(), client, client, slug, &ccsync.Selection{}, dest, pullOpts())
	if err != nil || sum.Failed != 0 || sum.Transferred != 1 {
		t.Fatalf("pull: %+v, %v", sum, err)
	}
	checkObject(t, dest, arts[0])
	t.Logf("served %.3fx the artifact", float64(srv.BytesServed())/size)
	if open := env.OpenUploads(t); len(open) != 0 {
		t.Errorf("multipart uploads left open: %v", open)
	}
}

// checkObject asserts that dest holds a at its default key, byte for byte.
func checkObject(t *testing.T, dest sink.Sink, a *circlecitest.Artifact) {
	t.Helper()
	rc, err := dest.Open(t.Context(), defaultKey(a))
	if err != nil {
		t.Fatalf("%s: %v", defaultKey(a), err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, content(t, a)) {
		t.Errorf("%s differs from the artifact (%d bytes, want %d)", defaultKey(a), len(got), a.Size())
	}
}

// An artifact replaced while its cut download goes on is not stitched
// together from two versions: the answer for the rest carries the new
// validator (If-Range sends the old one), so the download starts over and
// the destination holds the new version whole.
func TestCutDownloadOfReplacedArtifactStartsOver(t *testing.T) {
	const size = 32 << 20
	w, arts := cutWorld(1, size)
	a := arts[0]
	srv := circlecitest.Start(t, w, cutEvery(w, 1<<20, 32<<20))
	client := newClient(t, srv.URL)
	dest, dir := localSink(t)
	opts := pullOpts()
	opts.MultiThreadStreams = 1
	go func() {
		for srv.BytesServed() < size/4 {
			time.Sleep(time.Millisecond)
		}
		a.Replace(size) // same size: only the validator tells
	}()
	sum, err := ccsync.Pull(t.Context(), client, client, slug, &ccsync.Selection{}, dest, opts)
	if err != nil || sum.Failed != 0 || sum.Transferred != 1 {
		t.Fatalf("pull: %+v, %v", sum, err)
	}
	checkTree(t, dir, arts)
	t.Logf("served %.3fx the artifact", float64(srv.BytesServed())/size)
}
