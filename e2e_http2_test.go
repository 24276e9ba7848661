package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
)

// TestPullOverHTTP2: the binary, pointed at a fake whose hosts speak HTTPS
// and trusting it only through SSL_CERT_FILE (no flag turns verification
// off), fetches hundreds of small artifacts at -j 16 over one HTTP/2
// connection to each host that speaks it, dialed once (not once per
// transfer in flight); where the artifact host redirects to storage that
// speaks HTTP/1.1 (as CircleCI does to S3), over kept-alive connections to
// the storage host. The fake counts the connections each host accepted and
// those that carried requests.
func TestPullOverHTTP2(t *testing.T) {
	const conc = 16
	for _, tt := range []struct {
		name string
		opts circlecitest.Options
	}{
		{"artifact host", circlecitest.Options{TLS: true}},
		{"redirect to HTTP/2 storage", circlecitest.Options{TLS: true, Redirect: true}},
		{"redirect to HTTP/1.1 storage", circlecitest.Options{TLS: true, Redirect: true, HTTP1: []string{circlecitest.HostStorage}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := circlecitest.NewWorld()
			wf := w.AddProject(slugArg, "main").AddPipeline("main").AddWorkflow("build")
			var arts []*circlecitest.Artifact
			for j := range 4 {
				job := wf.AddJob("job-"+strconv.Itoa(j), circlecitest.JobOptions{})
				for i := range 40 {
					arts = append(arts, job.AddArtifact(0, fmt.Sprintf("out/f-%02d.bin", i), 2048))
				}
			}
			opts := tt.opts
			opts.Token = testToken
			opts.Latency = time.Millisecond
			srv := circlecitest.Start(t, w, opts)
			certFile := filepath.Join(t.TempDir(), "fake.pem")
			if err := os.WriteFile(certFile, srv.CertPEM(), 0o644); err != nil {
				t.Fatal(err)
			}
			d := localDest(t, srv)
			env := append(d.env, "SSL_CERT_FILE="+certFile)
			r := runTool(t, env, 2*time.Minute, d.pull("-j", strconv.Itoa(conc))...)
			wantCode(t, r, 0)
			d.check(t, mirrorOf(arts...), true)

			h2 := []string{circlecitest.HostAPI, circlecitest.HostArtifacts}
			if opts.Redirect && len(opts.HTTP1) == 0 {
				h2 = append(h2, circlecitest.HostStorage)
			}
			for _, lr := range srv.RequestLog() {
				if slices.Contains(h2, lr.Host) && lr.Proto != "HTTP/2.0" {
					t.Fatalf("a request to the %s host came over %s, want HTTP/2.0", lr.Host, lr.Proto)
				}
			}
			if n := srv.Requests("download"); n != len(arts) {
				t.Fatalf("%d requests to the artifact host, want %d", n, len(arts))
			}
			for _, host := range h2 {
				if n := srv.ConnectionsUsed(host); n != 1 {
					t.Errorf("%s host: %d connections carried requests, want 1 (HTTP/2)", host, n)
				}
				// Dial once, then share: no TLS handshake is wasted on
				// a connection that the client then closes unused.
				if n := srv.Connections(host); n != 1 {
					t.Errorf("%s host speaks HTTP/2, yet it accepted %d connections at -j %d: want 1", host, n, conc)
				}
			}
			if opts.Redirect && len(opts.HTTP1) > 0 {
				// See TestDownloadsReuseConnections for why not -j exactly.
				if n := srv.Connections(circlecitest.HostStorage); n > 2*conc {
					t.Errorf("storage host accepted %d connections for %d downloads at -j %d: they are not kept alive",
						n, srv.Requests("storage"), conc)
				}
			}
			t.Logf("connections accepted (carrying requests): API %d (%d), artifact host %d (%d), storage %d (%d)",
				srv.Connections(circlecitest.HostAPI), srv.ConnectionsUsed(circlecitest.HostAPI),
				srv.Connections(circlecitest.HostArtifacts), srv.ConnectionsUsed(circlecitest.HostArtifacts),
				srv.Connections(circlecitest.HostStorage), srv.ConnectionsUsed(circlecitest.HostStorage))
		})
	}
}

// TestUntrustedCertificateIsOneClearLine: a host whose certificate is not
// trusted is refused at once, with a line that says so (exit 1, as for an
// API that cannot be reached).
func TestUntrustedCertificateIsOneClearLine(t *testing.T) {
	w, _ := smallWorld(1, 10)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken, TLS: true})
	d := localDest(t, srv)
	// Another fake's certificate: a trust store that does not hold this one.
	other := circlecitest.Start(t, circlecitest.NewWorld(), circlecitest.Options{Token: testToken, TLS: true})
	certFile := filepath.Join(t.TempDir(), "other.pem")
	if err := os.WriteFile(certFile, other.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runTool(t, append(d.env, "SSL_CERT_FILE="+certFile), time.Minute, d.pull()...)
	wantCode(t, r, 1)
	wantOneLine(t, r, "its TLS certificate is not trusted")
	if n := len(srv.RequestLog()); n != 0 {
		t.Errorf("%d requests reached the host over an untrusted connection", n)
	}
}
