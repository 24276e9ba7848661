package sync_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	stdsync "sync"
	"testing"

	"github.com/artifact-sync/artifact-sync/circleci"
	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
	ccsync "github.com/artifact-sync/artifact-sync/sync"
)

// chunkedProxy starts a proxy in front of srv's artifact host that sends
// every answer without a Content-Length (chunked), as some proxies do, and
// counts the requests for each path.
func chunkedProxy(t *testing.T, srv *circlecitest.Server) (*httptest.Server, func(path string) int) {
	t.Helper()
	target, err := url.Parse(srv.ArtifactURL)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.FlushInterval = -1
	rp.ModifyResponse = func(r *http.Response) error {
		r.Header.Del("Content-Length")
		r.ContentLength = -1
		return nil
	}
	var mu stdsync.Mutex
	seen := map[string]int{}
	p := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.Path]++
		mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	return p, func(path string) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for p, c := range seen {
			if strings.HasSuffix(p, "/"+path) {
				n += c
			}
		}
		return n
	}
}

// viaProxy downloads artifact URLs of one host through another.
type viaProxy struct {
	c        *circleci.Client
	from, to string
}

func (v viaProxy) Download(ctx context.Context, rawURL string, off int64, ifRange string) (*http.Response, error) {
	return v.c.Download(ctx, strings.Replace(rawURL, v.from, v.to, 1), off, ifRange)
}

// A download that declares no length is held to --max-artifact-size as it
// arrives: past the limit that artifact fails at once, naming the flag,
// without another attempt, and nothing of it is left at its key or kept
// for a resume; a download within the limit goes through.
func TestUndeclaredLengthIsHeldToMaxArtifactSize(t *testing.T) {
	const limit = 1 << 20
	w := circlecitest.NewWorld()
	j := w.AddProject("gh/acme/widgets", "main").AddPipeline("main").AddWorkflow("build").AddJob("build", circlecitest.JobOptions{})
	big := j.AddArtifact(0, "endless.bin", 64<<20)
	small := j.AddArtifact(0, "fits.bin", limit)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token})
	proxy, requests := chunkedProxy(t, srv)
	client := newClient(t, srv.URL)
	dest, dir := localSink(t)
	opts := pullOpts()
	opts.MaxArtifactSize = limit
	sum, err := ccsync.Pull(t.Context(), client, viaProxy{client, srv.ArtifactURL, proxy.URL}, slug, &ccsync.Selection{}, dest, opts)
	if err != nil || sum.Failed != 1 || sum.Transferred != 1 || len(sum.Failures) != 1 {
		t.Fatalf("pull: %+v, %v; want the endless download failed and the other transferred", sum, err)
	}
	f := sum.Failures[0]
	if f.Path != big.Path() || !strings.Contains(f.Error, "--max-artifact-size") {
		t.Errorf("failure %+v: want %s, naming --max-artifact-size", f, big.Path())
	}
	t.Logf("failure: %s", f.Error)
	checkTree(t, dir, []*circlecitest.Artifact{small})
	if n := requests(big.Path()); n != 1 {
		t.Errorf("%d requests for the endless download, want 1: the limit is not worth retrying", n)
	}
	if p, _ := dest.Partial(t.Context(), defaultKey(big)); p.Size != 0 || len(p.Spans) != 0 {
		t.Errorf("bytes of the endless download are kept for a resume: %+v", p)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, ".artifact-sync", "partial")); len(entries) != 0 {
		t.Errorf("%d files left in .artifact-sync/partial", len(entries))
	}
	if served := srv.BytesServed(); served > 32<<20 {
		t.Errorf("the host served %d MiB of the endless download: the run did not stop reading at the limit", served>>20)
	}
}
