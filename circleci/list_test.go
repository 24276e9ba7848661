package circleci

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

// pagedServer serves items in pages of two at path, checking that every
// request carries want (the constant query) and the page token it handed
// out last. Tokens hold characters that must be escaped in a query.
func pagedServer(t *testing.T, path string, want url.Values, items []string) (*Client, *atomic.Int32) {
	t.Helper()
	var calls atomic.Int32
	token := func(page int) string { return fmt.Sprintf("AARL/wwY+%d= &x", page) }
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if got := r.URL.EscapedPath(); got != apiPath(path) {
			t.Errorf("path = %s, want %s", got, apiPath(path))
		}
		q := r.URL.Query()
		page := 0
		if tok := q.Get("page-token"); tok != "" {
			if _, err := fmt.Sscanf(tok, "AARL/wwY+%d=", &page); err != nil || tok != token(page) {
				t.Errorf("bad page token %q", tok)
			}
			q.Del("page-token")
		}
		if q.Encode() != want.Encode() {
			t.Errorf("page %d query = %q, want %q", page, q.Encode(), want.Encode())
		}
		end := min(2*page+2, len(items))
		var next any
		if end < len(items) {
			next = token(page + 1)
		}
		fmt.Fprintf(w, `{"next_page_token":%s,"items":[%s]}`, mustJSON(next), strings.Join(items[2*page:end], ","))
	})
	return newClient(t, srv), &calls
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func collect[T any](t *testing.T, seq iter.Seq2[T, error]) []T {
	t.Helper()
	var out []T
	for v, err := range seq {
		if err != nil {
			t.Fatalf("after %d items: %v", len(out), err)
		}
		out = append(out, v)
	}
	return out
}

func TestPagination(t *testing.T) {
	slug := Slug{"gh", "my org", "repo"}
	t.Run("pipelines keep the branch on every page", func(t *testing.T) {
		items := []string{}
		for i := 7; i > 0; i-- {
			items = append(items, fmt.Sprintf(`{"id":"p%d","number":%d,"state":"created"}`, i, i))
		}
		c, calls := pagedServer(t, "project/gh/my%20org/repo/pipeline", url.Values{"branch": {"release/1.x"}}, items)
		got := collect(t, c.Pipelines(t.Context(), slug, "release/1.x"))
		if len(got) != 7 || got[0].Number != 7 || got[6].ID != "p1" {
			t.Errorf("got %+v", got)
		}
		if calls.Load() != 4 {
			t.Errorf("%d requests, want 4", calls.Load())
		}
	})
	t.Run("workflows", func(t *testing.T) {
		items := []string{`{"id":"w1"}`, `{"id":"w2"}`, `{"id":"w3"}`, `{"id":"w4"}`, `{"id":"w5"}`, `{"id":"w6"}`}
		c, calls := pagedServer(t, "pipeline/p-1/workflow", url.Values{}, items)
		got := collect(t, c.Workflows(t.Context(), "p-1"))
		if len(got) != 6 || got[5].ID != "w6" || calls.Load() != 3 {
			t.Errorf("got %d workflows in %d requests: %+v", len(got), calls.Load(), got)
		}
	})
	t.Run("workflow jobs", func(t *testing.T) {
		items := []string{`{"id":"j1","job_number":1}`, `{"id":"j2","type":"approval"}`, `{"id":"j3","job_number":3}`, `{"id":"j4","job_number":4}`, `{"id":"j5","job_number":5}`}
		c, calls := pagedServer(t, "workflow/w-1/job", url.Values{}, items)
		got := collect(t, c.WorkflowJobs(t.Context(), "w-1"))
		if len(got) != 5 || got[1].JobNumber != nil || *got[4].JobNumber != 5 || calls.Load() != 3 {
			t.Errorf("got %d jobs in %d requests: %+v", len(got), calls.Load(), got)
		}
	})
	t.Run("artifacts", func(t *testing.T) {
		var items []string
		for i := range 5 {
			items = append(items, fmt.Sprintf(`{"path":"dist/f%d","node_index":%d,"url":"https://output.circle-artifacts.com/output/job/u/artifacts/%d/dist/f%d"}`, i, i%2, i%2, i))
		}
		c, calls := pagedServer(t, "project/gh/my%20org/repo/42/artifacts", url.Values{}, items)
		got := collect(t, c.Artifacts(t.Context(), slug, 42))
		if len(got) != 5 || got[3] != (Artifact{Path: "dist/f3", NodeIndex: 1, URL: "https://output.circle-artifacts.com/output/job/u/artifacts/1/dist/f3"}) || calls.Load() != 3 {
			t.Errorf("got %d artifacts in %d requests: %+v", len(got), calls.Load(), got)
		}
	})
	t.Run("stopping early fetches no further page", func(t *testing.T) {
		items := []string{`{"id":"w1"}`, `{"id":"w2"}`, `{"id":"w3"}`, `{"id":"w4"}`, `{"id":"w5"}`}
		c, calls := pagedServer(t, "pipeline/p-1/workflow", url.Values{}, items)
		for w, err := range c.Workflows(t.Context(), "p-1") {
			if err != nil || w.ID != "w1" {
				t.Fatalf("first = %+v, %v", w, err)
			}
			break
		}
		if calls.Load() != 1 {
			t.Errorf("%d requests, want 1", calls.Load())
		}
	})
}

func TestPaginationEmptyAndMissingToken(t *testing.T) {
	for _, body := range []string{
		`{"next_page_token":null,"items":[]}`,
		`{"items":[]}`,
		`{"items":null,"next_page_token":""}`,
	} {
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(body)) })
		if got := collect(t, newClient(t, srv).Artifacts(t.Context(), Slug{"gh", "o", "r"}, 1)); len(got) != 0 {
			t.Errorf("%s: got %v", body, got)
		}
	}
}

// TestBadPageToken: CircleCI answers an expired or invalid page token with
// 404 {"message":"Not Found"}. The error must surface once, not loop.
func TestBadPageToken(t *testing.T) {
	var calls atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.URL.Query().Get("page-token") == "" {
			w.Write([]byte(`{"items":[{"path":"a","node_index":0,"url":"u"}],"next_page_token":"stale"}`))
			return
		}
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"message":"Not Found"}`))
	})
	c := newClient(t, srv)
	var items, errs int
	var last error
	for _, err := range c.Artifacts(t.Context(), Slug{"gh", "o", "r"}, 1) {
		if err != nil {
			errs++
			last = err
			continue
		}
		items++
	}
	if items != 1 || errs != 1 || calls.Load() != 2 {
		t.Fatalf("items=%d errs=%d requests=%d, want 1, 1, 2", items, errs, calls.Load())
	}
	if !errors.Is(last, ErrNotFound) || !strings.Contains(last.Error(), "page token") {
		t.Errorf("error = %v, want a not-found error about the page token", last)
	}
}

func TestRepeatedPageTokenStops(t *testing.T) {
	var calls atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) > 10 {
			t.Error("client keeps following the same token")
		}
		w.Write([]byte(`{"items":[{"id":"w"}],"next_page_token":"same"}`))
	})
	var errs int
	for _, err := range newClient(t, srv).Workflows(t.Context(), "p") {
		if err != nil {
			errs++
		}
	}
	if errs != 1 || calls.Load() != 2 {
		t.Errorf("errs=%d requests=%d, want 1 and 2", errs, calls.Load())
	}
}

// TestPageCutShortIsRetried: a page whose body ends early is fetched again
// and its items are yielded once.
func TestPageCutShortIsRetried(t *testing.T) {
	var calls atomic.Int32
	full := `{"items":[{"path":"a","node_index":0,"url":"u"},{"path":"b","node_index":0,"url":"u"}],"next_page_token":null}`
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.Header().Set("Content-Length", fmt.Sprint(len(full)))
			w.Write([]byte(full[:60]))
			return
		}
		w.Write([]byte(full))
	})
	got := collect(t, newClient(t, srv).Artifacts(t.Context(), Slug{"gh", "o", "r"}, 1))
	if len(got) != 2 || calls.Load() != 2 {
		t.Errorf("got %v in %d requests", got, calls.Load())
	}
}

// TestLargePage decodes a single page of 20,000 artifacts.
func TestLargePage(t *testing.T) {
	const n = 20000
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"next_page_token":null,"items":[`))
		for i := range n {
			if i > 0 {
				w.Write([]byte(","))
			}
			fmt.Fprintf(w, `{"path":"out/dir%03d/file-%05d.txt","node_index":%d,"url":"https://output.circle-artifacts.com/output/job/0b4e/artifacts/%d/out/file-%05d.txt"}`, i%100, i, i%4, i%4, i)
		}
		w.Write([]byte(`]}`))
	})
	count := 0
	for a, err := range newClient(t, srv).Artifacts(t.Context(), Slug{"gh", "o", "r"}, 1) {
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("out/dir%03d/file-%05d.txt", count%100, count); a.Path != want {
			t.Fatalf("item %d path %q, want %q", count, a.Path, want)
		}
		count++
	}
	if count != n {
		t.Errorf("got %d artifacts, want %d", count, n)
	}
}

// TestResponseLimits: a body larger than its limit is refused after reading
// one byte past it, without a retry, with a line naming the host and the
// limit; a body of exactly the limit is read.
func TestResponseLimits(t *testing.T) {
	pad := func(json string, size int) string { // pads with spaces inside the object
		return json[:len(json)-1] + strings.Repeat(" ", size-len(json)) + "}"
	}
	me := `{"login":"me"}`
	page := `{"items":[{"id":"w"}],"next_page_token":null}`
	for _, tt := range []struct {
		name string
		body string
		call func(*Client) error
		fail bool
	}{
		{"object at the limit", pad(me, 1024), func(c *Client) error { _, err := c.Me(t.Context()); return err }, false},
		{"object over the limit", pad(me, 1025), func(c *Client) error { _, err := c.Me(t.Context()); return err }, true},
		{"page at the limit", pad(page, 4096), func(c *Client) error { return lastErr(c.Workflows(t.Context(), "p")) }, false},
		{"page over the limit", pad(page, 4097), func(c *Client) error { return lastErr(c.Workflows(t.Context(), "p")) }, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				io.WriteString(w, tt.body)
			})
			c := newClient(t, srv, func(cfg *Config) { cfg.Limits = Limits{ObjectBytes: 1024, PageBytes: 4096} })
			err := tt.call(c)
			if !tt.fail {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			want := "CircleCI API at " + srv.URL + prefix + " sent more than"
			if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "check that --host is the CircleCI API") {
				t.Errorf("error = %v, want one containing %q", err, want)
			}
			if calls.Load() != 1 {
				t.Errorf("%d requests, want 1: a body too large is not retried", calls.Load())
			}
		})
	}
}

func lastErr[T any](seq iter.Seq2[T, error]) error {
	var last error
	for _, err := range seq {
		if err != nil {
			last = err
		}
	}
	return last
}

// TestPageCapStopsAListing: a server that hands out a new page token with
// every page is followed for Limits.Pages pages, then the listing stops with
// an error saying so.
func TestPageCapStopsAListing(t *testing.T) {
	var calls atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		fmt.Fprintf(w, `{"items":[{"id":"w%d"}],"next_page_token":"t%d"}`, n, n)
	})
	c := newClient(t, srv, func(cfg *Config) { cfg.Limits.Pages = 7 })
	var items int
	var last error
	for _, err := range c.Workflows(t.Context(), "p") {
		if err != nil {
			last = err
			continue
		}
		items++
	}
	if items != 7 || calls.Load() != 7 {
		t.Errorf("%d items in %d requests, want 7 and 7", items, calls.Load())
	}
	if last == nil || !strings.Contains(last.Error(), "sent more than 7 pages") {
		t.Errorf("error = %v, want one about the page cap", last)
	}
}
