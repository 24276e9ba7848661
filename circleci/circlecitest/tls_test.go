package circlecitest_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
)

// tlsClient trusts srv's certificate and nothing else, and offers HTTP/2.
func tlsClient(srv *circlecitest.Server) *http.Client {
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: srv.CertPool()},
		ForceAttemptHTTP2: true,
	}}
}

// TestTLS: with Options.TLS every host speaks HTTPS with the Server's own
// certificate, HTTP/2 to a client that offers it except on the hosts
// Options.HTTP1 names; the request log says which protocol and which
// connection each request came over.
func TestTLS(t *testing.T) {
	w, j := smallWorld()
	a := j.Artifacts()[0]
	srv := circlecitest.Start(t, w, circlecitest.Options{
		Token: token, TLS: true, Redirect: true, HTTP1: []string{circlecitest.HostStorage},
	})
	for _, u := range []string{srv.URL, srv.ArtifactURL, srv.StorageURL} {
		if !strings.HasPrefix(u, "https://") {
			t.Fatalf("%s: not https", u)
		}
	}
	block, _ := pem.Decode(srv.CertPEM())
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("CertPEM: %q", srv.CertPEM())
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"127.0.0.1", "localhost"} {
		if _, err := cert.Verify(x509.VerifyOptions{DNSName: name, Roots: srv.CertPool()}); err != nil {
			t.Errorf("the certificate does not verify for %s: %v", name, err)
		}
	}

	hc := tlsClient(srv)
	get := func(u string) (*http.Response, []byte) {
		t.Helper()
		resp, err := hc.Do(newReq(t, u, "Circle-Token", token))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, body
	}
	for range 2 {
		if resp, _ := get(srv.URL + "/api/v2/me"); resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" {
			t.Errorf("API: %d over %s", resp.StatusCode, resp.Proto)
		}
	}
	// Go's client drops Circle-Token for another host; the storage host
	// speaks HTTP/1.1, as S3 does.
	resp, body := get(srv.ArtifactURLFor(a))
	if resp.StatusCode != 200 || sum(body) != a.SHA256() || resp.Proto != "HTTP/1.1" {
		t.Errorf("download: %d over %s", resp.StatusCode, resp.Proto)
	}

	log := srv.RequestLog()
	if len(log) != 4 {
		t.Fatalf("%d requests logged, want 4", len(log))
	}
	protos := map[string]string{}
	for _, lr := range log {
		protos[lr.Host] = lr.Proto
		if lr.Conn == 0 || lr.Received.IsZero() || lr.Answered.Before(lr.Received) {
			t.Errorf("%s %s: connection %d, received %v, answered %v", lr.Host, lr.Route, lr.Conn, lr.Received, lr.Answered)
		}
	}
	want := map[string]string{circlecitest.HostAPI: "HTTP/2.0", circlecitest.HostArtifacts: "HTTP/2.0", circlecitest.HostStorage: "HTTP/1.1"}
	for h, p := range want {
		if protos[h] != p {
			t.Errorf("%s: %s, want %s", h, protos[h], p)
		}
	}
	if log[0].Conn != log[1].Conn || srv.ConnectionsUsed(circlecitest.HostAPI) != 1 {
		t.Errorf("two API calls over connections %d and %d, want one", log[0].Conn, log[1].Conn)
	}

	// A client that does not trust the certificate is refused: nothing
	// about the fake needs verification turned off.
	_, err = http.DefaultClient.Do(newReq(t, srv.URL+"/api/v2/me", "Circle-Token", token))
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("a client without the certificate: %v, want unknown authority", err)
	}
}

// TestTLSBodyFaults: over HTTP/2 a cut or truncated body resets the
// request's stream after the bytes it sent, so the client sees an error,
// not a short body that ends cleanly, and the connection goes on serving.
func TestTLSBodyFaults(t *testing.T) {
	w, j := smallWorld()
	a := j.Artifacts()[0]
	all, _ := io.ReadAll(a.Content())
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token, TLS: true})
	hc := tlsClient(srv)
	for _, f := range []circlecitest.Fault{circlecitest.CutFault(40_000), circlecitest.TruncateFault(40_000)} {
		srv.ResetStats()
		srv.SetFaults(circlecitest.FailFirst(1, f))
		resp, err := hc.Do(newReq(t, srv.ArtifactURLFor(a), "Circle-Token", token))
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil || resp.Proto != "HTTP/2.0" {
			t.Errorf("%v over %s: no error reading the body", f, resp.Proto)
		}
		if len(body) != 40_000 || !bytes.Equal(body, all[:40_000]) {
			t.Errorf("%v: %d good bytes, want 40000", f, len(body))
		}
		if d := srv.Downloads(a); d.Completed != 0 || d.Bytes != 40_000 {
			t.Errorf("%v: %+v", f, d)
		}
		resp, err = hc.Do(newReq(t, srv.ArtifactURLFor(a), "Circle-Token", token))
		if err != nil {
			t.Fatal(err)
		}
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || sum(body) != a.SHA256() {
			t.Errorf("%v: the next attempt: %v", f, err)
		}
		if n := srv.ConnectionsUsed(circlecitest.HostArtifacts); n != 1 {
			t.Errorf("%v: %d connections, want the one, still serving", f, n)
		}
	}
}
