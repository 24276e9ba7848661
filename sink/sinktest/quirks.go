package sinktest

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Quirks are behaviours of S3-compatible servers, documented and seen in
// the field, that NewQuirkyS3 plays in front of a real server.
type Quirks struct {
	// TaggingReplacesObject plays gofakes3 1.2.0, which has no tagging
	// API and routes by method alone: PUT ?tagging stores the request's
	// tagging XML as the object and answers 200, and GET ?tagging answers
	// with the object.
	TaggingReplacesObject bool
	// NoUploadManagement plays s3rver 3.7.1, which uploads parts but
	// cannot list or abort them: ListParts and AbortMultipartUpload are
	// answered 405 MethodNotAllowed, ListMultipartUploads 501
	// NotImplemented.
	NoUploadManagement bool
}

// QuirkyS3 is a reverse proxy on loopback in front of a real S3 server
// that plays Quirks.
type QuirkyS3 struct {
	// Env is the bucket as seen through the proxy.
	Env S3Env
	// Played counts the requests answered with a quirk rather than by the
	// server behind.
	Played atomic.Int64
}

// NewQuirkyS3 starts a proxy in front of env's server that plays q, and
// returns it with the same bucket seen through it. Requests pass through
// signed as they came (the Host header is kept), so the server behind
// checks their signatures; what the proxy writes itself, it writes with
// env's credentials.
func NewQuirkyS3(t testing.TB, env S3Env, q Quirks) *QuirkyS3 {
	t.Helper()
	target, err := url.Parse(env.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		pr.Out.Host = pr.In.Host // signed with it
	}, ErrorLog: log.New(io.Discard, "", 0)} // a client that hangs up is no news
	client := env.Client()
	qs := &QuirkyS3{Env: env}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bucket, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		query := r.URL.Query()
		_, tagging := query["tagging"]
		_, uploads := query["uploads"]
		switch {
		case q.TaggingReplacesObject && tagging && key != "" && r.Method == http.MethodPut:
			body, _ := io.ReadAll(r.Body)
			_, err := client.PutObject(r.Context(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key),
				Body: bytes.NewReader(body), ContentLength: aws.Int64(int64(len(body)))})
			if err != nil {
				s3Fail(w, http.StatusInternalServerError, "InternalError", err.Error())
				return
			}
			qs.Played.Add(1)
			w.WriteHeader(http.StatusOK)
		case q.TaggingReplacesObject && tagging && key != "" && r.Method == http.MethodGet:
			out, err := client.GetObject(r.Context(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
			if err != nil {
				s3Fail(w, http.StatusNotFound, "NoSuchKey", err.Error())
				return
			}
			defer out.Body.Close()
			qs.Played.Add(1)
			w.Header().Set("Content-Type", aws.ToString(out.ContentType))
			io.Copy(w, out.Body)
		case q.NoUploadManagement && query.Has("uploadId") && (r.Method == http.MethodGet || r.Method == http.MethodDelete):
			qs.Played.Add(1)
			s3Fail(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "The specified method is not allowed against this resource.")
		case q.NoUploadManagement && uploads && key == "" && r.Method == http.MethodGet:
			qs.Played.Add(1)
			s3Fail(w, http.StatusNotImplemented, "NotImplemented", "A parameter you provided implies functionality that is not implemented")
		default:
			rp.ServeHTTP(w, r)
		}
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	qs.Env.Endpoint = srv.URL
	return qs
}

func s3Fail(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>%s</Message></Error>`, code, msg)
}
