package circleci

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

// FuzzResponse hands the client arbitrary HTTP responses, status line,
// headers and body, parsed by net/http as if they came off the wire, for
// single objects, pages of a list and a download. Whatever arrives, the
// client must not panic or loop, must stop a listing at its first error,
// and every error must be one line without the token.
func FuzzResponse(f *testing.F) {
	for _, seed := range []string{
		"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + `{"id":"u1","login":"me","name":"Me"}`,
		"HTTP/1.1 200 OK\r\nContent-Length: 81\r\n\r\n" + `{"slug":"gh/acme/widgets","vcs_info":{"default_branch":"main"},"name":"widgets"}`,
		"HTTP/1.1 200 OK\r\n\r\n" + `{"items":[{"path":"a.txt","node_index":0,"url":"https://output.circle-artifacts.com/a"}],"next_page_token":"AARL/wwY+="}`,
		"HTTP/1.1 200 OK\r\n\r\n" + `{"next_page_token":null,"items":[{"id":"j","name":"test","type":"build","status":"success","job_number":7,"started_at":null}]}`,
		"HTTP/1.1 200 OK\r\n\r\n" + `{"items":null,"next_page_token":null}`,
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"ite\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"items\":[",
		"HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775807\r\n\r\n{}",
		"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html><body>Sign in</body></html>",
		"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n\x1f\x8b\x08\x00",
		"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Type: text/plain\r\n\r\nRate limited.",
		"HTTP/1.1 503 Service Unavailable\r\nRetry-After: Wed, 21 Oct 2015 07:28:00 GMT\r\n\r\n",
		"HTTP/1.1 500 Internal Server Error\r\n\r\n" + `{"message":"Internal server error."}`,
		"HTTP/1.1 401 Unauthorized\r\n\r\n" + `{"message":"token ` + testToken + ` is not valid"}`,
		"HTTP/1.1 404 Not Found\r\n\r\n" + `{"error":"Not Found\n\x1b]52;c;aGk=\x07"}`,
		"HTTP/1.1 302 Found\r\nLocation: https://bucket.s3.amazonaws.com/x?X-Amz-Signature=abc&circle-token=" + testToken + "\r\n\r\n",
		"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-3/10\r\nContent-Length: 4\r\n\r\nabcd",
		"HTTP/1.0 200 OK\r\n\r\n" + strings.Repeat(`[`, 10000),
		"garbage",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		hc := &http.Client{Transport: rawTransport(raw)}
		c, err := New(Config{
			Host: "http://127.0.0.1:9", Token: testToken, HTTPClient: hc,
			Retry:  RetryPolicy{MaxAttempts: 3},
			Limits: Limits{ObjectBytes: 4 << 10, PageBytes: 16 << 10, Pages: 4},
		})
		if err != nil {
			t.Fatal(err)
		}
		c.newTimer = (&recordingTimer{}).newTimer
		ctx := t.Context()
		check := func(what string, err error) {
			if err == nil {
				return
			}
			msg := err.Error()
			if msg == "" || strings.ContainsAny(msg, "\r\n") {
				t.Errorf("%s: error is not one line: %q", what, msg)
			}
			if strings.Contains(msg, testToken) {
				t.Errorf("%s: error holds the token: %q", what, msg)
			}
		}
		_, err = c.Me(ctx)
		check("Me", err)
		_, err = c.Project(ctx, Slug{"gh", "acme", "widgets"})
		check("Project", err)
		listing(t, "Artifacts", check, c.Artifacts(ctx, Slug{"gh", "acme", "widgets"}, 7))
		listing(t, "WorkflowJobs", check, c.WorkflowJobs(ctx, "w"))
		resp, err := c.Download(ctx, "http://127.0.0.1:9/output/a.txt", 0, "")
		check("Download", err)
		if err == nil {
			_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			check("Download body", err)
		}
	})
}

// listing consumes a list, checking that nothing follows an error.
func listing[T any](t *testing.T, what string, check func(string, error), seq func(func(T, error) bool)) {
	failed := false
	for _, err := range seq {
		if failed {
			t.Errorf("%s: an item or error after an error", what)
		}
		if err != nil {
			check(what, err)
			failed = true
		}
	}
}

// rawTransport answers every request with the same raw bytes, read by
// net/http's own response parser.
type rawTransport []byte

func (r rawTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(r)), req)
	if err != nil {
		return nil, err
	}
	return resp, nil
}
