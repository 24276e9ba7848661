package sinktest

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// NewFakeS3 starts an in-process S3 server on loopback for the test and
// returns a bucket on it: gofakes3's memory backend, which honours
// If-None-Match and If-Match on PUT but ignores If-Match on DELETE (as
// MinIO does). With ignoreConditions it ignores them on PUT too, as s3rver
// and other servers without conditional writes do (the headers are
// dropped before gofakes3 sees them). It does not verify checksums: it
// complements the real server of NewS3Bucket, it does not replace it.
func NewFakeS3(t testing.TB, ignoreConditions bool) S3Env {
	t.Helper()
	backend := s3mem.New()
	h := gofakes3.New(backend).Server()
	if ignoreConditions {
		inner := h
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.Header.Del("If-None-Match")
			r.Header.Del("If-Match")
			inner.ServeHTTP(w, r)
		})
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	env := S3Env{Endpoint: srv.URL, Bucket: "fake-bucket", AccessKey: "testkey", SecretKey: "testsecret123", Region: "us-east-1"}
	if err := backend.CreateBucket(env.Bucket); err != nil {
		t.Fatal(err)
	}
	return env
}
