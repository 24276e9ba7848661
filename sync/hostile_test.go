package sync_test

import (
	"bytes"
	"context"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
	"github.com/artifact-sync/artifact-sync/sink"
	ccsync "github.com/artifact-sync/artifact-sync/sync"
)

// hostileDownloader answers every download with what answer makes of the
// request: a test double for an artifact host that lies.
type hostileDownloader struct {
	answer func(off int64, ifRange string) *http.Response
}

func (h *hostileDownloader) Download(ctx context.Context, rawURL string, off int64, ifRange string) (*http.Response, error) {
	return h.answer(off, ifRange), nil
}

func response(status int, body []byte, header ...string) *http.Response {
	r := &http.Response{StatusCode: status, Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body))}
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
		if header[i] == "Content-Length" {
			r.ContentLength, _ = strconv.ParseInt(header[i+1], 10, 64)
		}
	}
	return r
}

// A download that declares an absurd size fails that artifact at once and
// cleanly: no panic, no overflow, nothing written, the run goes on.
func TestHugeContentLengthFailsThatArtifact(t *testing.T) {
	w, a := bigWorld(100)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token})
	client := newClient(t, srv.URL)
	dest, dir := localSink(t)
	for _, declared := range []int64{math.MaxInt64, 1 << 50} {
		dl := &hostileDownloader{answer: func(int64, string) *http.Response {
			return response(200, []byte("short"), "Content-Length", strconv.FormatInt(declared, 10), "ETag", `"x"`)
		}}
		sum, err := ccsync.Pull(t.Context(), client, dl, slug, &ccsync.Selection{}, dest, pullOpts())
		if err != nil || sum.Failed != 1 || !strings.Contains(sum.Failures[0].Error, "max-artifact-size") {
			t.Fatalf("declared %d bytes: %+v, %v; want one failure naming --max-artifact-size", declared, sum, err)
		}
		checkTree(t, dir, nil)
		_ = a
	}
	// The sink itself never overflows on a declared size, however large.
	if _, err := dest.Put(t.Context(), "k", strings.NewReader("short"), sink.PutOptions{Size: math.MaxInt64}); err == nil {
		t.Fatal("a Put of 5 bytes declared as 2^63-1 succeeded")
	}
}

// A resumed download is recorded only when the answer's Content-Range
// proves it completes the kept bytes to the artifact's end: a 206 that
// starts where asked but ends early, or names another total, is not
// stitched in.
func TestResumeChecksTheWholeContentRange(t *testing.T) {
	const size = 5000
	w, a := bigWorld(size)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token})
	client := newClient(t, srv.URL)
	data := content(t, a)
	for _, tc := range []struct {
		name  string
		cr    string
		body  []byte
		etag  string
		noVal bool
	}{
		{name: "ends early", cr: "bytes 1000-1009/5000", body: data[1000:1010]},
		{name: "other total", cr: "bytes 1000-5999/6000", body: bytes.Repeat([]byte("x"), 5000)},
		{name: "unknown total", cr: "bytes 1000-4999/*", body: data[1000:]},
		{name: "overflowing numbers", cr: "bytes 1000-99999999999999999999/5000", body: data[1000:]},
		{name: "no content range", cr: "", body: data[1000:]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dest, dir := localSink(t)
			keepPartial(t, dest, a, data, 1000, size, a.ETag())
			var lied bool
			dl := &hostileDownloader{answer: func(off int64, ifRange string) *http.Response {
				if off > 0 && !lied {
					lied = true
					return response(206, tc.body, "Content-Range", tc.cr, "ETag", a.ETag())
				}
				return response(200, data, "ETag", a.ETag())
			}}
			sum, err := ccsync.Pull(t.Context(), client, dl, slug, &ccsync.Selection{}, dest, pullOpts())
			if err != nil || sum.Failed != 0 || sum.Transferred != 1 {
				t.Fatalf("pull: %+v, %v", sum, err)
			}
			if !lied {
				t.Fatal("the kept bytes were not resumed: the test proves nothing")
			}
			checkTree(t, dir, []*circlecitest.Artifact{a})
		})
	}
}
