package sync

import (
	"net/http"
	"strings"
	"testing"
)

// checkResume accepts a 206 only when range, total, length and version all
// prove it continues the kept bytes; each refusal says what did not match.
func TestCheckResume(t *testing.T) {
	const date = "Tue, 01 Dec 2026 10:00:00 GMT"
	answer := func(status int, cr string, length int64, header ...string) *http.Response {
		r := &http.Response{StatusCode: status, Header: http.Header{}, ContentLength: length}
		if cr != "" {
			r.Header.Set("Content-Range", cr)
		}
		for i := 0; i+1 < len(header); i += 2 {
			r.Header.Set(header[i], header[i+1])
		}
		return r
	}
	for _, tc := range []struct {
		name      string
		resp      *http.Response
		validator string
		refusal   string // "" if accepted
	}{
		{"same ETag", answer(206, "bytes 100-999/1000", 900, "ETag", `"v1"`), `"v1"`, ""},
		{"length unknown", answer(206, "bytes 100-999/1000", -1, "ETag", `"v1"`), `"v1"`, ""},
		{"same Last-Modified", answer(206, "bytes 100-999/1000", 900, "Last-Modified", date), date, ""},
		{"Last-Modified beside a weak ETag", answer(206, "bytes 100-999/1000", 900, "ETag", `W/"x"`, "Last-Modified", date), date, ""},
		{"another ETag", answer(206, "bytes 100-999/1000", 900, "ETag", `"v2"`), `"v1"`, `got version "\"v2\""`},
		{"no ETag in the answer", answer(206, "bytes 100-999/1000", 900), `"v1"`, `got version ""`},
		{"another date", answer(206, "bytes 100-999/1000", 900, "Last-Modified", "Wed, 02 Dec 2026 10:00:00 GMT"), date, "If-Range"},
		{"nothing kept to compare", answer(206, "bytes 100-999/1000", 900, "ETag", `"v1"`), "", "cannot be proven"},
		{"200", answer(200, "", 1000, "ETag", `"v1"`), `"v1"`, "got 200 OK"},
		{"other start", answer(206, "bytes 0-999/1000", 1000, "ETag", `"v1"`), `"v1"`, "Content-Range"},
		{"ends early", answer(206, "bytes 100-500/1000", 401, "ETag", `"v1"`), `"v1"`, "Content-Range"},
		{"other total", answer(206, "bytes 100-999/2000", 900, "ETag", `"v1"`), `"v1"`, "Content-Range"},
		{"length disagrees", answer(206, "bytes 100-999/1000", 10, "ETag", `"v1"`), `"v1"`, "Content-Length 10"},
		{"no Content-Range", answer(206, "", 900, "ETag", `"v1"`), `"v1"`, "Content-Range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkResume(tc.resp, 100, 999, 1000, tc.validator)
			switch {
			case tc.refusal == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.refusal != "" && err == nil:
				t.Errorf("accepted, want a refusal saying %q", tc.refusal)
			case tc.refusal != "" && !strings.Contains(err.Error(), tc.refusal):
				t.Errorf("refusal %q does not say %q", err, tc.refusal)
			}
		})
	}
}
