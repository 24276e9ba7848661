package circleci

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
)

// TestDownloadsReuseConnections: many small downloads, a pull's worth at
// -j 16 with the API listing alongside, go over kept-alive connections. Over
// HTTP/1.1 no host sees more connections than requests in flight to it,
// also on both sides of a redirect to storage; over HTTP/2 (TLS) a host is
// dialed once, by the first request, and every request shares that
// connection. The server counts the connections: those it accepted and
// those that carried requests.
func TestDownloadsReuseConnections(t *testing.T) {
	const (
		conc    = 16 // downloads in flight, as -j
		listers = 8  // API listings in flight, as pull's limit
	)
	storageH1 := circlecitest.Options{TLS: true, Redirect: true, HTTP1: []string{circlecitest.HostStorage}}
	for _, tt := range []struct {
		name string
		opts circlecitest.Options
		h2   []string // hosts that speak HTTP/2; the others HTTP/1.1
	}{
		{"HTTP/1.1", circlecitest.Options{}, nil},
		{"HTTP/1.1 redirect", circlecitest.Options{Redirect: true}, nil},
		{"HTTP/2", circlecitest.Options{TLS: true}, []string{circlecitest.HostAPI, circlecitest.HostArtifacts}},
		{"HTTP/2 redirect", circlecitest.Options{TLS: true, Redirect: true},
			[]string{circlecitest.HostAPI, circlecitest.HostArtifacts, circlecitest.HostStorage}},
		// As CircleCI: the artifact host speaks HTTP/2 and redirects to S3,
		// which speaks HTTP/1.1.
		{"HTTP/2 redirect to HTTP/1.1 storage", storageH1, []string{circlecitest.HostAPI, circlecitest.HostArtifacts}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := circlecitest.NewWorld()
			wf := w.AddProject("gh/acme/widgets", "main").AddPipeline("main").AddWorkflow("build")
			var arts []*circlecitest.Artifact
			var jobs []int64
			for j := range 8 {
				job := wf.AddJob(fmt.Sprintf("job-%d", j), circlecitest.JobOptions{})
				jobs = append(jobs, job.Number())
				for i := range 50 {
					arts = append(arts, job.AddArtifact(0, fmt.Sprintf("out/f-%03d.txt", i), 1024))
				}
			}
			opts := tt.opts
			opts.Token = testToken
			opts.Latency = time.Millisecond // so that requests overlap
			srv := circlecitest.Start(t, w, opts)

			// The transport New makes, trusting the fake's certificate.
			tr := newTransport(conc, time.Minute)
			if opts.TLS {
				tr.TLSClientConfig = &tls.Config{RootCAs: srv.CertPool()}
			}
			c, err := New(Config{Host: srv.URL, Token: testToken, HTTPClient: &http.Client{Transport: tr}})
			if err != nil {
				t.Fatal(err)
			}
			slug := mustSlug(t, "gh/acme/widgets")

			// Listings keep the API busy until the downloads are done, as
			// a pull's listing does while its first transfers run.
			done := make(chan struct{})
			var wg sync.WaitGroup
			for l := range listers {
				wg.Go(func() {
					for k := l; ; k++ {
						select {
						case <-done:
							return
						default:
						}
						for _, err := range c.Artifacts(t.Context(), slug, jobs[k%len(jobs)]) {
							if err != nil {
								t.Errorf("listing: %v", err)
								return
							}
						}
					}
				})
			}
			work := make(chan *circlecitest.Artifact)
			var dl sync.WaitGroup
			for range conc {
				dl.Go(func() {
					for a := range work {
						if err := fetch(t, c, srv.ArtifactURLFor(a), a.SHA256()); err != nil {
							t.Errorf("%s: %v", a.Path(), err)
						}
					}
				})
			}
			for _, a := range arts {
				work <- a
			}
			close(work)
			dl.Wait()
			close(done)
			wg.Wait()

			downloads := srv.Requests("download")
			if downloads != len(arts) {
				t.Fatalf("%d requests to the artifact host, want %d", downloads, len(arts))
			}
			hosts := []string{circlecitest.HostAPI, circlecitest.HostArtifacts}
			if opts.Redirect {
				hosts = append(hosts, circlecitest.HostStorage)
			}
			for _, host := range hosts {
				inFlight := conc
				if host == circlecitest.HostAPI {
					inFlight = listers
				}
				accepted, used := srv.Connections(host), srv.ConnectionsUsed(host)
				t.Logf("%s: %d connections accepted, %d carried requests", host, accepted, used)
				if slices.Contains(tt.h2, host) {
					for _, lr := range srv.RequestLog() {
						if lr.Host == host && lr.Proto != "HTTP/2.0" {
							t.Fatalf("%s: a request came over %s, want HTTP/2.0", host, lr.Proto)
						}
					}
					if used != 1 {
						t.Errorf("%s speaks HTTP/2, yet %d connections carried requests, want 1", host, used)
					}
					// Dial once, then share: the requests that come
					// while the first is connecting wait for its
					// connection instead of each dialing their own.
					if accepted != 1 {
						t.Errorf("%s speaks HTTP/2, yet it accepted %d connections for %d requests, at most %d at a time: want 1 (dial once, then share)",
							host, accepted, requests(srv, host), inFlight)
					}
					continue
				}
				// Without keep-alive every request would be a connection.
				// Go's transport races a dial against a connection coming
				// back, so a loaded machine can see a few more connections
				// than requests in flight (17 to 20 for 16 were seen), but
				// not twice as many.
				if limit := 2 * inFlight; accepted > limit {
					t.Errorf("%s accepted %d connections for %d requests at most %d at a time: connections are not kept alive",
						host, accepted, requests(srv, host), inFlight)
				}
			}
		})
	}
}

// requests counts the requests host received.
func requests(srv *circlecitest.Server, host string) int {
	n := 0
	for _, lr := range srv.RequestLog() {
		if lr.Host == host {
			n++
		}
	}
	return n
}

// fetch downloads rawURL whole and checks its SHA-256.
func fetch(t *testing.T, c *Client, rawURL, sum string) error {
	resp, err := c.Download(t.Context(), rawURL, 0, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum {
		return fmt.Errorf("sha256 %s, want %s", got, sum)
	}
	return nil
}
