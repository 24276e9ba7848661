package circlecitest_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
)

const token = "CCIPAT_test_token"

// smallWorld has one project with one job of two nodes and a few artifacts.
func smallWorld() (*circlecitest.World, *circlecitest.Job) {
	w := circlecitest.NewWorld()
	p := w.AddProject("gh/acme/widgets", "main")
	j := p.AddPipeline("main").AddWorkflow("build").AddJob("build", circlecitest.JobOptions{Parallelism: 2})
	j.AddArtifact(0, "dist/app.tgz", 100_000)
	j.AddArtifact(1, "dist/app.tgz", 70_001)
	j.AddArtifact(0, "empty", 0)
	return w, j
}

func do(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	return resp, body
}

func newReq(t *testing.T, u string, header ...string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return req
}

func TestNewServerNeedsToken(t *testing.T) {
	if _, err := circlecitest.NewServer(circlecitest.NewWorld(), circlecitest.Options{}); err == nil {
		t.Fatal("NewServer without a token succeeded")
	}
}

func TestAPIAuth(t *testing.T) {
	w, _ := smallWorld()
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token})
	u := srv.URL + "/api/v2/project/gh/acme/widgets"
	basic := func(user string) string {
		req, _ := http.NewRequest("GET", "http://x", nil)
		req.SetBasicAuth(user, "")
		return req.Header.Get("Authorization")
	}
	for _, tc := range []struct {
		name    string
		header  []string
		query   string
		status  int
		message string
	}{
		{"none", nil, "", 401, "You must log in first"},
		{"circle-token", []string{"Circle-Token", token}, "", 200, ""},
		{"bearer", []string{"Authorization", "Bearer " + token}, "", 200, ""},
		{"basic", []string{"Authorization", basic(token)}, "", 200, ""},
		{"wrong circle-token", []string{"Circle-Token", "nope"}, "", 401, "Invalid token provided."},
		{"empty circle-token", []string{"Circle-Token", ""}, "", 401, "Invalid token provided."},
		{"empty bearer", []string{"Authorization", "Bearer"}, "", 401, "Invalid token provided."},
		{"wrong basic", []string{"Authorization", basic("nope")}, "", 401, "Invalid token provided."},
		{"query", nil, "?circle-token=" + token, 401, "Support for query parameter authentication has been deprecated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := newReq(t, u+tc.query)
			for i := 0; i+1 < len(tc.header); i += 2 {
				req.Header[http.CanonicalHeaderKey(tc.header[i])] = []string{tc.header[i+1]}
			}
			resp, body := do(t, req)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if tc.message != "" && !strings.Contains(string(body), `{"message":"`+tc.message) {
				t.Errorf("body %s, want message %q", body, tc.message)
			}
		})
	}
	auth := map[string]int{}
	for _, lr := range srv.RequestLog() {
		auth[lr.Auth]++
	}
	if auth["bearer"] != 1 || auth["other"] != 1 || auth["basic"] != 2 || auth["query"] != 1 || auth[""] != 1 {
		t.Errorf("request log auth kinds: %v", auth)
	}
}

func TestSlugForms(t *testing.T) {
	w := circlecitest.NewWorld()
	w.AddProject("github/acme/widgets", "main")
	w.AddProject("bb/acme/legacy", "master")
	w.AddProject("circleci/43G3kM5RtfFE7v5sa4nWAU/44n9pujWcTnVZ2b5S8Fnat", "main")
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token, PathPrefix: "/ci"})
	if !strings.HasSuffix(srv.URL, "/ci") {
		t.Fatalf("URL %q does not end in the path prefix", srv.URL)
	}
	for _, tc := range []struct{ path, slug string }{
		{"gh/acme/widgets", "gh/acme/widgets"},
		{"github/acme/widgets", "gh/acme/widgets"},
		{"gh%2Facme%2Fwidgets", "gh/acme/widgets"},
		{"github%2Facme/widgets", "gh/acme/widgets"},
		{"bitbucket/acme/legacy", "bb/acme/legacy"},
		{"bb%2Facme%2Flegacy", "bb/acme/legacy"},
		{"circleci/43G3kM5RtfFE7v5sa4nWAU/44n9pujWcTnVZ2b5S8Fnat", "circleci/43G3kM5RtfFE7v5sa4nWAU/44n9pujWcTnVZ2b5S8Fnat"},
		{"circleci%2F43G3kM5RtfFE7v5sa4nWAU%2F44n9pujWcTnVZ2b5S8Fnat", "circleci/43G3kM5RtfFE7v5sa4nWAU/44n9pujWcTnVZ2b5S8Fnat"},
	} {
		resp, body := do(t, newReq(t, srv.URL+"/api/v2/project/"+tc.path, "Circle-Token", token))
		var p struct{ Slug string }
		json.Unmarshal(body, &p)
		if resp.StatusCode != 200 || p.Slug != tc.slug {
			t.Errorf("GET project/%s = %d %s, want slug %q", tc.path, resp.StatusCode, body, tc.slug)
		}
	}
	for _, path := range []string{"/api/v2/project/gh/acme", "/api/v2/project/gh/acme/widgets/x", "/api/v2/nope", "/api/v2/me/"} {
		resp, body := do(t, newReq(t, srv.URL+path, "Circle-Token", token))
		if resp.StatusCode != 404 || string(body) != `{"message":"Not Found"}` {
			t.Errorf("GET %s = %d %s, want 404 Not Found", path, resp.StatusCode, body)
		}
	}
	// Without the prefix nothing is found.
	resp, _ := do(t, newReq(t, strings.TrimSuffix(srv.URL, "/ci")+"/api/v2/me", "Circle-Token", token))
	if resp.StatusCode != 404 {
		t.Errorf("GET /api/v2/me without the prefix: %d", resp.StatusCode)
	}
	if n := srv.Requests("project"); n != 8 {
		t.Errorf(`Requests("project") = %d, want 8`, n)
	}
}

type pipelinePage struct {
	Items []struct {
		Number int64
		VCS    struct{ Branch string }
	}
	NextPageToken *string `json:"next_page_token"`
}

func TestPagination(t *testing.T) {
	w := circlecitest.NewWorld()
	p := w.AddProject("gh/acme/widgets", "main")
	for i := range 7 {
		p.AddPipeline([]string{"main", "dev"}[i%2])
	}
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token, PageSize: 3})
	base := srv.URL + "/api/v2/project/gh/acme/widgets/pipeline"

	list := func(query url.Values) (numbers []int64, tokens []string) {
		t.Helper()
		for {
			resp, body := do(t, newReq(t, base+"?"+query.Encode(), "Circle-Token", token))
			if resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			var pg pipelinePage
			json.Unmarshal(body, &pg)
			for _, it := range pg.Items {
				numbers = append(numbers, it.Number)
			}
			if pg.NextPageToken == nil {
				if !bytes.Contains(body, []byte(`"next_page_token":null`)) {
					t.Errorf("last page without an explicit null token: %s", body)
				}
				return numbers, tokens
			}
			tokens = append(tokens, *pg.NextPageToken)
			query.Set("page-token", *pg.NextPageToken)
		}
	}
	got, tokens := list(url.Values{})
	if fmt.Sprint(got) != "[7 6 5 4 3 2 1]" || len(tokens) != 2 {
		t.Errorf("pipelines %v over %d tokens, want newest first over 2", got, len(tokens))
	}
	for _, tok := range tokens {
		if !strings.ContainsAny(tok, "+/") || !strings.HasSuffix(tok, "=") {
			t.Errorf("token %q does not need escaping; it should, like the real ones", tok)
		}
	}
	got, _ = list(url.Values{"branch": {"main"}})
	if fmt.Sprint(got) != "[7 5 3 1]" {
		t.Errorf("branch main: %v", got)
	}
	got, _ = list(url.Values{"branch": {""}})
	if len(got) != 7 {
		t.Errorf("empty branch filters: %v", got)
	}

	// A token sent unescaped ('+' becomes a space), a token for another
	// list and garbage are all 404 Not Found.
	for _, u := range []string{
		base + "?page-token=" + tokens[0],
		base + "?branch=main&page-token=" + url.QueryEscape(tokens[0]),
		base + "?page-token=AAAA",
	} {
		resp, body := do(t, newReq(t, u, "Circle-Token", token))
		if resp.StatusCode != 404 || string(body) != `{"message":"Not Found"}` {
			t.Errorf("GET %s = %d %s, want 404 Not Found", u, resp.StatusCode, body)
		}
	}
}

func TestArtifactsListedInOneBodyByDefault(t *testing.T) {
	w := circlecitest.NewWorld()
	j := w.AddProject("gh/acme/widgets", "main").AddPipeline("main").AddWorkflow("w").AddJob("j", circlecitest.JobOptions{})
	for i := range 2500 {
		j.AddArtifact(0, fmt.Sprintf("reports/%04d.xml", i), 1)
	}
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token})
	_, body := do(t, newReq(t, srv.URL+"/api/v2/project/gh/acme/widgets/1/artifacts", "Circle-Token", token))
	var pg struct {
		Items         []struct{ Path string }
		NextPageToken *string `json:"next_page_token"`
	}
	if err := json.Unmarshal(body, &pg); err != nil {
		t.Fatal(err)
	}
	if len(pg.Items) != 2500 || pg.NextPageToken != nil || pg.Items[0].Path != "reports/0000.xml" {
		t.Errorf("%d items, next %v, first %+v", len(pg.Items), pg.NextPageToken, pg.Items[0])
	}
}

type artifactItem struct {
	Path      string `json:"path"`
	NodeIndex int    `json:"node_index"`
	URL       string `json:"url"`
}

func listArtifacts(t *testing.T, srv *circlecitest.Server, slug string, job int64) []artifactItem {
	t.Helper()
	_, body := do(t, newReq(t, fmt.Sprintf("%s/api/v2/project/%s/%d/artifacts", srv.URL, slug, job), "Circle-Token", token))
	var pg struct{ Items []artifactItem }
	if err := json.Unmarshal(body, &pg); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	return pg.Items
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestContentDeterministic(t *testing.T) {
	w1, j1 := smallWorld()
	w2, j2 := smallWorld()
	a1, a2 := j1.Artifacts()[0], j2.Artifacts()[0]
	if a1.SHA256() != a2.SHA256() || a1.ETag() != a2.ETag() {
		t.Error("the same construction gave different bytes")
	}
	if a1.SHA256() == j1.Artifacts()[1].SHA256() {
		t.Error("two nodes' artifacts at one path have the same bytes")
	}
	b, _ := io.ReadAll(a1.Content())
	if int64(len(b)) != a1.Size() || sum(b) != a1.SHA256() {
		t.Errorf("Content gave %d bytes (want %d) or SHA256 disagrees", len(b), a1.Size())
	}
	// Seeking gives the same bytes as reading through.
	r := a1.Content()
	r.Seek(12345, io.SeekStart)
	tail, _ := io.ReadAll(r)
	if !bytes.Equal(tail, b[12345:]) {
		t.Error("Seek+Read differs from the stream")
	}

	srv := circlecitest.Start(t, w1, circlecitest.Options{Token: token})
	items := listArtifacts(t, srv, "gh/acme/widgets", j1.Number())
	if len(items) != 3 {
		t.Fatalf("listed %d artifacts", len(items))
	}
	for i, a := range j1.Artifacts() {
		for range 2 {
			resp, body := do(t, newReq(t, items[i].URL, "Circle-Token", token))
			if resp.StatusCode != 200 || sum(body) != a.SHA256() {
				t.Errorf("%s: %d, %d bytes, sha256 mismatch", items[i].URL, resp.StatusCode, len(body))
			}
			if resp.Header.Get("Content-Length") != fmt.Sprint(a.Size()) || resp.Header.Get("ETag") != a.ETag() || resp.Header.Get("Last-Modified") == "" {
				t.Errorf("%s: headers %v", items[i].URL, resp.Header)
			}
		}
	}
	if got := srv.BytesServed(); got != 2*(100_000+70_001) {
		t.Errorf("BytesServed = %d", got)
	}
	if d := srv.Downloads(a1); d.Started != 2 || d.Completed != 2 || d.Bytes != 200_000 {
		t.Errorf("Downloads = %+v", d)
	}

	// Replace gives new bytes and a new ETag.
	oldSum, oldTag := a1.SHA256(), a1.ETag()
	a1.Replace(5)
	if a1.SHA256() == oldSum || a1.ETag() == oldTag || a1.Size() != 5 {
		t.Error("Replace did not change the artifact")
	}
	w1.SetSeed(2)
	if j1.Artifacts()[1].SHA256() == j2.Artifacts()[1].SHA256() {
		t.Error("SetSeed did not change the bytes")
	}
	_ = w2
}

func TestRange(t *testing.T) {
	w, j := smallWorld()
	a := j.Artifacts()[0]
	all, _ := io.ReadAll(a.Content())
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token})
	u := srv.ArtifactURLFor(a)
	for _, tc := range []struct {
		name          string
		header        []string
		status        int
		want          []byte
		contentRange  string
		contentLength string
	}{
		{"open", []string{"Range", "bytes=99000-"}, 206, all[99000:], "bytes 99000-99999/100000", "1000"},
		{"closed", []string{"Range", "bytes=10-19"}, 206, all[10:20], "bytes 10-19/100000", "10"},
		{"if-range match", []string{"Range", "bytes=50000-", "If-Range", a.ETag()}, 206, all[50000:], "bytes 50000-99999/100000", "50000"},
		{"if-range stale", []string{"Range", "bytes=50000-", "If-Range", `"stale"`}, 200, all, "", "100000"},
		{"beyond", []string{"Range", "bytes=100000-"}, 416, nil, "bytes */100000", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := do(t, newReq(t, u, append([]string{"Circle-Token", token}, tc.header...)...))
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.want != nil && !bytes.Equal(body, tc.want) {
				t.Errorf("got %d bytes, not the expected %d", len(body), len(tc.want))
			}
			if got := resp.Header.Get("Content-Range"); got != tc.contentRange {
				t.Errorf("Content-Range %q, want %q", got, tc.contentRange)
			}
			if tc.contentLength != "" && resp.Header.Get("Content-Length") != tc.contentLength {
				t.Errorf("Content-Length %q, want %q", resp.Header.Get("Content-Length"), tc.contentLength)
			}
		})
	}

	noRange := circlecitest.Start(t, w, circlecitest.Options{Token: token, NoRange: true})
	resp, body := do(t, newReq(t, noRange.ArtifactURLFor(a), "Circle-Token", token, "Range", "bytes=10-"))
	if resp.StatusCode != 200 || !bytes.Equal(body, all) || resp.Header.Get("Content-Range") != "" {
		t.Errorf("NoRange: %d, %d bytes", resp.StatusCode, len(body))
	}
}

func TestHostilePathsServedVerbatim(t *testing.T) {
	w := circlecitest.NewWorld()
	j := w.AddProject("gh/acme/widgets", "main").AddPipeline("main").AddWorkflow("w").AddJob("j", circlecitest.JobOptions{})
	for i, p := range hostilePaths {
		j.AddArtifact(0, p, int64(10+i))
	}
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token})
	items := listArtifacts(t, srv, "gh/acme/widgets", 1)
	if len(items) != len(hostilePaths) {
		t.Fatalf("listed %d", len(items))
	}
	for i, it := range items {
		if it.Path != hostilePaths[i] {
			t.Errorf("listed path %q, want %q verbatim", it.Path, hostilePaths[i])
		}
		if !strings.HasPrefix(it.URL, srv.ArtifactURL+"/output/job/"+j.ID()+"/artifacts/0/") {
			t.Errorf("URL %q", it.URL)
		}
		if _, err := url.Parse(it.URL); err != nil {
			t.Errorf("URL %q does not parse: %v", it.URL, err)
			continue
		}
		resp, body := do(t, newReq(t, it.URL, "Circle-Token", token))
		if resp.StatusCode != 200 || sum(body) != j.Artifacts()[i].SHA256() {
			t.Errorf("%q: %d, wrong bytes", it.Path, resp.StatusCode)
		}
	}
}

func TestArtifactHostAuth(t *testing.T) {
	w, j := smallWorld()
	a := j.Artifacts()[0]
	private := circlecitest.Start(t, w, circlecitest.Options{Token: token})
	public := circlecitest.Start(t, w, circlecitest.Options{Token: token, PublicArtifacts: true})
	for _, tc := range []struct {
		srv    *circlecitest.Server
		name   string
		header []string
		query  string
		status int
	}{
		{private, "private none", nil, "", 401},
		{private, "private query token no longer works", nil, "?circle-token=" + token, 401},
		{private, "private circle-token", []string{"Circle-Token", token}, "", 200},
		{private, "private bearer", []string{"Authorization", "Bearer " + token}, "", 200},
		{private, "private wrong", []string{"Circle-Token", "nope"}, "", 401},
		{public, "public none", nil, "", 200},
		{public, "public wrong", []string{"Circle-Token", "nope"}, "", 401},
	} {
		resp, _ := do(t, newReq(t, tc.srv.ArtifactURLFor(a)+tc.query, tc.header...))
		if resp.StatusCode != tc.status {
			t.Errorf("%s: %d, want %d", tc.name, resp.StatusCode, tc.status)
		}
	}
	resp, _ := do(t, newReq(t, private.ArtifactURL+"/output/job/"+j.ID()+"/artifacts/0/nope", "Circle-Token", token))
	if resp.StatusCode != 404 {
		t.Errorf("unknown artifact: %d", resp.StatusCode)
	}
}

func TestRedirectAndLeaks(t *testing.T) {
	w, j := smallWorld()
	a := j.Artifacts()[0]
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token, Redirect: true})
	if srv.StorageURL == "" || strings.HasPrefix(srv.StorageURL, srv.ArtifactURL) {
		t.Fatalf("StorageURL %q", srv.StorageURL)
	}

	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Do(newReq(t, srv.ArtifactURLFor(a), "Circle-Token", token))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != 302 || !strings.HasPrefix(loc, srv.StorageURL+"/") || !strings.Contains(loc, "X-Amz-Signature=") {
		t.Fatalf("artifact host answered %d Location %q", resp.StatusCode, loc)
	}
	// The presigned URL needs no credential, and its signature is checked.
	resp, body := do(t, newReq(t, loc))
	if resp.StatusCode != 200 || sum(body) != a.SHA256() {
		t.Errorf("presigned GET: %d", resp.StatusCode)
	}
	resp, _ = do(t, newReq(t, strings.Replace(loc, "X-Amz-Signature=", "X-Amz-Signature=0", 1)))
	if resp.StatusCode != 403 {
		t.Errorf("tampered signature: %d", resp.StatusCode)
	}
	if n := len(srv.LeakedCredentials()); n != 0 {
		t.Fatalf("%d leaks before any was made", n)
	}

	// Go's client forwards Circle-Token across hosts: that is a leak.
	resp, body = do(t, newReq(t, srv.ArtifactURLFor(a), "Circle-Token", token))
	if resp.StatusCode != 200 || sum(body) != a.SHA256() {
		t.Errorf("followed redirect: %d", resp.StatusCode)
	}
	leaks := srv.LeakedCredentials()
	if len(leaks) != 1 || leaks[0].Kind != "Circle-Token" || leaks[0].Value != token {
		t.Errorf("leaks after Circle-Token: %+v", leaks)
	}
	// It strips Authorization on a redirect to another host name.
	srv.ResetStats()
	resp, _ = do(t, newReq(t, srv.ArtifactURLFor(a), "Authorization", "Bearer "+token))
	if resp.StatusCode != 200 || len(srv.LeakedCredentials()) != 0 {
		t.Errorf("bearer: %d, leaks %+v", resp.StatusCode, srv.LeakedCredentials())
	}
	// Authorization that does reach storage is refused, as S3 does.
	resp, body = do(t, newReq(t, loc, "Authorization", "Bearer "+token, "Cookie", "session=1"))
	if resp.StatusCode != 400 || !bytes.Contains(body, []byte("Only one auth mechanism allowed")) {
		t.Errorf("Authorization at storage: %d %s", resp.StatusCode, body)
	}
	resp, _ = do(t, newReq(t, loc+"&circle-token="+token))
	if resp.StatusCode != 200 {
		t.Errorf("query token at storage: %d", resp.StatusCode)
	}
	kinds := map[string]int{}
	for _, l := range srv.LeakedCredentials() {
		kinds[l.Kind]++
	}
	if fmt.Sprint(kinds) != "map[Authorization:1 Cookie:1 circle-token:1]" {
		t.Errorf("leak kinds %v", kinds)
	}
	if srv.Requests("download") != 1 || srv.Requests("storage") != 3 {
		t.Errorf("requests %v", srv.RequestCounts())
	}
	if d := srv.Downloads(a); d.Started != 2 || d.Completed != 2 {
		t.Errorf("downloads counted on the storage host: %+v", d)
	}
}

func TestFaultStatusFirstAttempts(t *testing.T) {
	w, j := smallWorld()
	a, b := j.Artifacts()[0], j.Artifacts()[1]
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token})
	srv.SetFaults(circlecitest.OnArtifact(a, circlecitest.FailFirst(2, circlecitest.StatusFault(503, "1"))))
	for attempt, want := range []int{503, 503, 200, 200} {
		resp, _ := do(t, newReq(t, srv.ArtifactURLFor(a), "Circle-Token", token))
		if resp.StatusCode != want {
			t.Errorf("attempt %d: %d, want %d", attempt+1, resp.StatusCode, want)
		}
		if want == 503 && resp.Header.Get("Retry-After") != "1" {
			t.Errorf("attempt %d: Retry-After %q", attempt+1, resp.Header.Get("Retry-After"))
		}
	}
	if resp, _ := do(t, newReq(t, srv.ArtifactURLFor(b), "Circle-Token", token)); resp.StatusCode != 200 {
		t.Errorf("another artifact failed: %d", resp.StatusCode)
	}
	if d := srv.Downloads(a); d.Started != 2 || d.Completed != 2 {
		t.Errorf("failed attempts counted as downloads: %+v", d)
	}

	// The API, in JSON or as the plain text CircleCI's limiter has sent.
	srv.SetFaults(circlecitest.OnHost(circlecitest.HostAPI, circlecitest.FailFirst(1, circlecitest.Fault{Kind: circlecitest.FaultStatus, Status: 429, RetryAfter: "3", PlainText: true})))
	resp, body := do(t, newReq(t, srv.URL+"/api/v2/me", "Circle-Token", token))
	if resp.StatusCode != 429 || string(body) != "Rate limited." || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") || resp.Header.Get("Retry-After") != "3" {
		t.Errorf("plain 429: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	if resp, _ := do(t, newReq(t, srv.URL+"/api/v2/me", "Circle-Token", token)); resp.StatusCode != 200 {
		t.Errorf("second attempt: %d", resp.StatusCode)
	}
}

func TestFaultBody(t *testing.T) {
	w, j := smallWorld()
	a := j.Artifacts()[0]
	all, _ := io.ReadAll(a.Content())
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token})

	get := func() (*http.Response, []byte, error) {
		resp, err := http.DefaultClient.Do(newReq(t, srv.ArtifactURLFor(a), "Circle-Token", token))
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp, body, err
	}
	for _, f := range []circlecitest.Fault{circlecitest.CutFault(40_000), circlecitest.TruncateFault(40_000)} {
		srv.ResetStats()
		srv.SetFaults(circlecitest.FailFirst(1, f))
		resp, body, err := get()
		if err == nil {
			t.Errorf("%v: no error reading the body", f)
			continue
		}
		if resp.Header.Get("Content-Length") != "100000" || len(body) != 40_000 || !bytes.Equal(body, all[:40_000]) {
			t.Errorf("%v: Content-Length %s, got %d good bytes", f, resp.Header.Get("Content-Length"), len(body))
		}
		if f.Kind == circlecitest.FaultTruncate && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%v: %v, want unexpected EOF", f, err)
		}
		if d := srv.Downloads(a); d.Started != 1 || d.Completed != 0 || d.Bytes != 40_000 {
			t.Errorf("%v: %+v", f, d)
		}
		// The next attempt is whole.
		if _, body, err := get(); err != nil || sum(body) != a.SHA256() {
			t.Errorf("%v: retry: %v", f, err)
		}
	}

	srv.SetFaults(circlecitest.FailFirst(1, circlecitest.StallFault(1000, 300*time.Millisecond)))
	start := time.Now()
	if _, body, err := get(); err != nil || sum(body) != a.SHA256() {
		t.Errorf("stall: %v", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("stall lasted %v", d)
	}

	// A stalled or hung request is abandoned by a client's timeout, and the
	// server does not wait for it.
	srv.SetFaults(circlecitest.FirstOf(
		circlecitest.OnRoute("me", circlecitest.FailFirst(1, circlecitest.HangFault())),
		circlecitest.FailFirst(1, circlecitest.StallFault(10, time.Hour)),
	))
	client := &http.Client{Timeout: 200 * time.Millisecond}
	if _, err := client.Do(newReq(t, srv.URL+"/api/v2/me", "Circle-Token", token)); err == nil {
		t.Error("hang: no timeout")
	}
	resp, err := client.Do(newReq(t, srv.ArtifactURLFor(a), "Circle-Token", token))
	if err != nil {
		t.Fatalf("stall: headers did not come: %v", err)
	}
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Error("stall of an hour: no timeout")
	}
	resp.Body.Close()

	// Body faults act on API pages too.
	srv.SetFaults(circlecitest.OnRoute("artifacts", circlecitest.FailFirst(1, circlecitest.TruncateFault(20))))
	resp, err = http.DefaultClient.Do(newReq(t, srv.URL+"/api/v2/project/gh/acme/widgets/1/artifacts", "Circle-Token", token))
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated page: %v", err)
	}
}

func TestCloseEndsHangs(t *testing.T) {
	w, _ := smallWorld()
	srv, err := circlecitest.NewServer(w, circlecitest.Options{Token: token, Faults: circlecitest.FailFirst(1, circlecitest.HangFault())})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		resp, err := http.Get(srv.URL + "/api/v2/me")
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	for srv.PeakConcurrentAPI() == 0 && len(errc) == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	done := make(chan struct{})
	go func() { srv.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for a hung request")
	}
	if err := <-errc; err == nil {
		t.Error("the hung request got an answer")
	}
	srv.Close()
}

func TestFaultPolicies(t *testing.T) {
	w := circlecitest.NewWorld()
	j := w.AddProject("gh/acme/widgets", "main").AddPipeline("main").AddWorkflow("w").AddJob("j", circlecitest.JobOptions{})
	for i := range 100 {
		j.AddArtifact(0, fmt.Sprintf("f%03d", i), 10)
	}
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token})
	failed := func() []string {
		var out []string
		for _, a := range j.Artifacts() {
			resp, _ := do(t, newReq(t, srv.ArtifactURLFor(a), "Circle-Token", token))
			if resp.StatusCode != 200 {
				out = append(out, a.Path())
			}
		}
		return out
	}
	srv.SetFaults(circlecitest.OnDownloads(circlecitest.FailPercent(20, circlecitest.StatusFault(500, ""))))
	first := failed()
	if len(first) < 8 || len(first) > 35 {
		t.Errorf("FailPercent(20) failed %d of 100", len(first))
	}
	second := failed() // attempt 2 of each: a different choice
	srv.SetFaults(circlecitest.OnDownloads(circlecitest.FailPercent(20, circlecitest.StatusFault(500, ""))))
	if again := failed(); fmt.Sprint(again) != fmt.Sprint(first) {
		t.Error("FailPercent chose differently for the same attempts")
	}
	if fmt.Sprint(second) == fmt.Sprint(first) {
		t.Error("FailPercent chose the same artifacts for attempts 1 and 2")
	}

	srv.SetFaults(circlecitest.FailEvery(5, circlecitest.StatusFault(502, "")))
	if n := len(failed()); n != 20 {
		t.Errorf("FailEvery(5) failed %d of 100", n)
	}
}

func TestStatsConcurrency(t *testing.T) {
	w := circlecitest.NewWorld()
	j := w.AddProject("gh/acme/widgets", "main").AddPipeline("main").AddWorkflow("w").AddJob("j", circlecitest.JobOptions{})
	for i := range 4 {
		j.AddArtifact(0, fmt.Sprint(i), 1000)
	}
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token, Latency: 150 * time.Millisecond})
	var wg sync.WaitGroup
	for _, a := range j.Artifacts() {
		wg.Go(func() { do(t, newReq(t, srv.ArtifactURLFor(a), "Circle-Token", token)) })
		wg.Go(func() { do(t, newReq(t, srv.URL+"/api/v2/me", "Circle-Token", token)) })
	}
	wg.Wait()
	if srv.PeakConcurrentDownloads() != 4 || srv.PeakConcurrentAPI() != 4 {
		t.Errorf("peaks: %d downloads, %d API; want 4 and 4", srv.PeakConcurrentDownloads(), srv.PeakConcurrentAPI())
	}
	if tot := srv.DownloadTotals(); tot.Started != 4 || tot.Completed != 4 || tot.Bytes != 4000 || srv.Requests("download") != 4 || srv.Requests("me") != 4 {
		t.Errorf("totals %+v, requests %v", tot, srv.RequestCounts())
	}
	srv.ResetStats()
	if srv.PeakConcurrentDownloads() != 0 || srv.BytesServed() != 0 || len(srv.RequestLog()) != 0 || srv.Requests("me") != 0 {
		t.Error("ResetStats left counts")
	}
}

func TestBandwidth(t *testing.T) {
	w := circlecitest.NewWorld()
	a := w.AddProject("gh/acme/widgets", "main").AddPipeline("main").AddWorkflow("w").AddJob("j", circlecitest.JobOptions{}).AddArtifact(0, "f", 100_000)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token, Bandwidth: 400_000})
	start := time.Now()
	_, body := do(t, newReq(t, srv.ArtifactURLFor(a), "Circle-Token", token))
	if d := time.Since(start); d < 200*time.Millisecond || sum(body) != a.SHA256() {
		t.Errorf("100 kB at 400 kB/s took %v", d)
	}
}

// TestWorldChangesWhileServing runs under -race: the World is changed while
// the Server reads it.
func TestWorldChangesWhileServing(t *testing.T) {
	w := circlecitest.NewWorld()
	p := w.AddProject("gh/acme/widgets", "main")
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token, PageSize: 2})
	var wg sync.WaitGroup
	wg.Go(func() {
		for range 30 {
			wf := p.AddPipeline("main").AddWorkflow("w")
			j := wf.AddJob("j", circlecitest.JobOptions{Status: "running"})
			j.AddArtifact(0, "x", 10)
			j.SetStatus("success")
			wf.SetStatus("failed")
		}
	})
	for range 30 {
		do(t, newReq(t, srv.URL+"/api/v2/project/gh/acme/widgets/pipeline", "Circle-Token", token))
	}
	wg.Wait()
	_, body := do(t, newReq(t, srv.URL+"/api/v2/project/gh/acme/widgets/pipeline/30", "Circle-Token", token))
	if !bytes.Contains(body, []byte(`"number":30`)) {
		t.Errorf("pipeline 30: %s", body)
	}
}

// TestOutage: during an outage the host refuses or resets every connection,
// including one kept alive from before; afterwards it serves again at the
// same address, over TLS too.
func TestOutage(t *testing.T) {
	for _, tt := range []struct {
		kind circlecitest.OutageKind
		want syscall.Errno
		tls  bool
	}{
		{circlecitest.OutageRefuse, syscall.ECONNREFUSED, false},
		{circlecitest.OutageReset, syscall.ECONNRESET, false},
		{circlecitest.OutageRefuse, syscall.ECONNREFUSED, true},
		{circlecitest.OutageReset, syscall.ECONNRESET, true},
	} {
		name := tt.want.Error()
		if tt.tls {
			name += " TLS"
		}
		t.Run(name, func(t *testing.T) {
			w, _ := smallWorld()
			srv := circlecitest.Start(t, w, circlecitest.Options{Token: token, TLS: tt.tls})
			hc := &http.Client{Transport: &http.Transport{}}
			if tt.tls {
				hc = tlsClient(srv)
			}
			me := func() error {
				req := newReq(t, srv.URL+"/api/v2/me", "Circle-Token", token)
				resp, err := hc.Do(req)
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				_, err = io.ReadAll(resp.Body)
				if err == nil && resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
				return err
			}
			if err := me(); err != nil { // leaves a connection kept alive
				t.Fatal(err)
			}
			const d = 500 * time.Millisecond
			start := time.Now()
			srv.Outage(circlecitest.HostAPI, tt.kind, d)
			// The kept-alive connection is gone too: net/http retries a
			// GET that failed on a reused connection on a new one, so the
			// error is the new connection's. Over HTTP/2 it may report the
			// reset of the kept-alive connection instead, and a reset
			// that races the client's first read may reach it as EOF.
			err := me()
			resetAsEOF := errors.Is(tt.want, syscall.ECONNRESET) && errors.Is(err, io.EOF)
			if time.Since(start) < d && !errors.Is(err, tt.want) && !(tt.tls && errors.Is(err, syscall.ECONNRESET)) && !resetAsEOF {
				t.Errorf("during the outage: %v, want %v", err, tt.want)
			}
			if _, err := hc.Get(srv.ArtifactURL + "/"); err != nil {
				t.Errorf("the artifact host is down too: %v", err)
			}
			time.Sleep(time.Until(start.Add(d)))
			deadline := time.Now().Add(10 * time.Second)
			for err := me(); err != nil; err = me() {
				if time.Now().After(deadline) {
					t.Fatalf("still failing after the outage: %v", err)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// TestJitterSpreadsLatency: with Jitter, requests wait Latency spread over
// [Latency-Jitter, Latency+Jitter] rather than all the same, as on a network
// whose delay varies; the fake's own log of each request tells.
func TestJitterSpreadsLatency(t *testing.T) {
	w, _ := smallWorld()
	const latency, jitter = 40 * time.Millisecond, 30 * time.Millisecond
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token, Latency: latency, Jitter: jitter})
	var wg sync.WaitGroup
	for range 30 {
		wg.Go(func() { do(t, newReq(t, srv.URL+"/api/v2/me", "Circle-Token", token)) })
	}
	wg.Wait()
	lo, hi := time.Hour, time.Duration(0)
	for _, lr := range srv.RequestLog() {
		d := lr.Answered.Sub(lr.Received)
		if d < latency-jitter {
			t.Errorf("a request waited %v, less than Latency-Jitter (%v)", d, latency-jitter)
		}
		lo, hi = min(lo, d), max(hi, d)
	}
	if hi-lo < jitter/2 {
		t.Errorf("30 requests waited from %v to %v: Jitter %v does not spread them", lo, hi, jitter)
	}
}
