package circleci

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
)

// TestHTTP2ConnectionLossIsRetryable: over HTTPS with HTTP/2, a connection
// cut every 256 KiB (a TCP fault proxy's cut, below TLS) fails every
// download it carries at once. Each failure is retryable, like a reset
// connection over HTTP/1.1, and says in one sentence which host failed and
// how, never net/http's own words; each retry, resumed from the bytes
// received, finds a fresh connection, one per connection lost (dialed once,
// then shared), and every artifact arrives whole.
func TestHTTP2ConnectionLossIsRetryable(t *testing.T) {
	const (
		conc  = 16
		cut   = 256 << 10
		count = 48
	)
	w := circlecitest.NewWorld()
	job := w.AddProject("gh/acme/widgets", "main").AddPipeline("main").AddWorkflow("build").AddJob("build", circlecitest.JobOptions{})
	var arts []*circlecitest.Artifact
	for i := range count {
		arts = append(arts, job.AddArtifact(0, fmt.Sprintf("out/f-%02d.bin", i), 96<<10+int64(i)<<10))
	}
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken, TLS: true, Bandwidth: 4 << 20})
	srv.CutConnections(circlecitest.HostArtifacts, cut)
	tr := newTransport(conc, time.Minute)
	tr.TLSClientConfig = &tls.Config{RootCAs: srv.CertPool()}
	c, err := New(Config{Host: srv.URL, Token: testToken, HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}

	sentence := regexp.MustCompile(`^download from 127\.0\.0\.1:\d+: [A-Za-z][A-Za-z0-9/ ()]+$`)
	var mu sync.Mutex
	failures := map[string]int{}
	work := make(chan *circlecitest.Artifact)
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for a := range work {
				got, err := fetchRetrying(t, c, srv.ArtifactURLFor(a), a.Size(), func(err error) {
					mu.Lock()
					failures[err.Error()]++
					mu.Unlock()
				})
				if err != nil {
					t.Errorf("%s: %v", a.Path(), err)
					continue
				}
				if got != a.SHA256() {
					t.Errorf("%s: sha256 %s, want %s", a.Path(), got, a.SHA256())
				}
			}
		})
	}
	for _, a := range arts {
		work <- a
	}
	close(work)
	wg.Wait()

	cuts := srv.ConnectionsCut(circlecitest.HostArtifacts)
	t.Logf("%d connections cut, %d accepted; failures: %v", cuts, srv.Connections(circlecitest.HostArtifacts), failures)
	if cuts < 3 {
		t.Fatalf("only %d connections were cut: the test tests nothing", cuts)
	}
	for msg := range failures {
		if !sentence.MatchString(msg) {
			t.Errorf("failure %q is not one sentence naming the host and what happened", msg)
		}
	}
	// Each connection lost is dialed again about once, not once per
	// download it carried (2.6 to 4 times as many connections as cuts
	// were seen so): a request can still meet a lost connection that the
	// transport has not noticed, and net/http then dials from within it.
	if n, limit := srv.Connections(circlecitest.HostArtifacts), 2*cuts; n > limit {
		t.Errorf("the artifact host accepted %d connections for %d connections lost: want at most %d", n, cuts, limit)
	}
}

// fetchRetrying downloads rawURL (size bytes) as the transfer layer does:
// on a retryable failure, reported to failed, it asks again for the bytes
// from the first it lacks. It returns the SHA-256 of the whole, or the
// first failure that is not retryable.
func fetchRetrying(t *testing.T, c *Client, rawURL string, size int64, failed func(error)) (string, error) {
	h := sha256.New()
	var have int64
	for attempt := 1; ; attempt++ {
		if attempt > 100 {
			return "", fmt.Errorf("no end after %d attempts", attempt)
		}
		err := func() error {
			resp, err := c.Download(t.Context(), rawURL, have, "")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			n, err := io.Copy(h, resp.Body)
			have += n
			switch {
			case have == size:
				return nil // a failure after the last byte costs nothing
			case err == nil:
				return io.ErrUnexpectedEOF
			}
			return err
		}()
		if err == nil {
			return hex.EncodeToString(h.Sum(nil)), nil
		}
		if !IsRetryable(err) {
			return "", fmt.Errorf("not retryable: %w", err)
		}
		failed(err)
		time.Sleep(time.Duration(attempt) * 5 * time.Millisecond)
	}
}

// TestSilentHTTP2ConnectionIsLeft: an HTTP/2 connection that goes silent
// (its path gone, no reset) carries every transfer to its host; the
// client notices by a ping that is not answered, drops it and dials
// again, so the transfers go on instead of failing attempt after attempt
// on the same dead connection, each after a full idle timeout.
func TestSilentHTTP2ConnectionIsLeft(t *testing.T) {
	const (
		conc  = 4
		count = 8
		idle  = 2 * time.Second
	)
	w := circlecitest.NewWorld()
	job := w.AddProject("gh/acme/widgets", "main").AddPipeline("main").AddWorkflow("build").AddJob("build", circlecitest.JobOptions{})
	var arts []*circlecitest.Artifact
	for i := range count {
		arts = append(arts, job.AddArtifact(0, fmt.Sprintf("out/f-%02d.bin", i), 1<<20+int64(i)<<10))
	}
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken, TLS: true, Bandwidth: 4 << 20})
	srv.SilenceConnections(circlecitest.HostArtifacts, 2<<20, 2)
	tr := newTransport(conc, idle)
	tr.TLSClientConfig = &tls.Config{RootCAs: srv.CertPool()}
	c, err := New(Config{Host: srv.URL, Token: testToken, HTTPClient: &http.Client{Transport: tr}, IdleTimeout: idle})
	if err != nil {
		t.Fatal(err)
	}
	// Five attempts in a row that keep nothing fail an artifact, as
	// --retries does.
	const retries = 5
	work := make(chan *circlecitest.Artifact)
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
		next:
			for a := range work {
				h := sha256.New()
				var have int64
				for fruitless := 0; have < a.Size(); {
					n, err := func() (int64, error) {
						resp, err := c.Download(t.Context(), srv.ArtifactURLFor(a), have, "")
						if err != nil {
							return 0, err
						}
						defer resp.Body.Close()
						return io.Copy(h, resp.Body)
					}()
					have += n
					switch {
					case have == a.Size():
					case n > 0:
						fruitless = 0
					case err != nil && !IsRetryable(err):
						t.Errorf("%s: %v", a.Path(), err)
						continue next
					default:
						if fruitless++; fruitless == retries {
							t.Errorf("%s: %d attempts in a row kept nothing (%d of %d bytes): %v", a.Path(), retries, have, a.Size(), err)
							continue next
						}
					}
				}
				if got := hex.EncodeToString(h.Sum(nil)); got != a.SHA256() {
					t.Errorf("%s: sha256 %s, want %s", a.Path(), got, a.SHA256())
				}
			}
		})
	}
	for _, a := range arts {
		work <- a
	}
	close(work)
	wg.Wait()
	if n := srv.ConnectionsSilenced(circlecitest.HostArtifacts); n != 2 {
		t.Errorf("%d connections went silent, want 2: the test tests nothing", n)
	}
	t.Logf("%d connections accepted", srv.Connections(circlecitest.HostArtifacts))
}
