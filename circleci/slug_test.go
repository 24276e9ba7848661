package circleci

import (
	"net/http"
	"strings"
	"testing"
)

func TestParseSlug(t *testing.T) {
	tests := []struct {
		in      string
		want    Slug
		wantErr string
	}{
		{in: "gh/CircleCI-Public/circleci-cli", want: Slug{"gh", "CircleCI-Public", "circleci-cli"}},
		{in: "github/org/repo", want: Slug{"github", "org", "repo"}},
		{in: "bb/org/repo", want: Slug{"bb", "org", "repo"}},
		{in: "bitbucket/org/repo", want: Slug{"bitbucket", "org", "repo"}},
		{in: "circleci/43G3kM5RtfFE7v5sa4nWAU/44n9pujWcTnVZ2b5S8Fnat", want: Slug{"circleci", "43G3kM5RtfFE7v5sa4nWAU", "44n9pujWcTnVZ2b5S8Fnat"}},
		{in: "gh/my org/re#po", want: Slug{"gh", "my org", "re#po"}},
		{in: "gh/org/repo.js", want: Slug{"gh", "org", "repo.js"}},
		{in: "", wantErr: "1 segments"},
		{in: "gh/org", wantErr: "2 segments"},
		{in: "gh/org/repo/extra", wantErr: "4 segments"},
		{in: "gh/org/repo/", wantErr: "4 segments"},
		{in: "gh//repo", wantErr: "empty segment"},
		{in: "/org/repo", wantErr: "empty segment"},
		{in: "gh/../repo", wantErr: `segment ".."`},
		{in: "gh/org/.", wantErr: `segment "."`},
		{in: "gl/org/repo", wantErr: `unknown VCS "gl"`},
		{in: "GH/org/repo", wantErr: "unknown VCS"},
		{in: "gh/org/re\x00po", wantErr: "control characters"},
		{in: "gh/org/re\npo", wantErr: "control characters"},
		{in: "gh/org/re\x7fpo", wantErr: "control characters"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSlug(tt.in)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseSlug(%q) = %+v, want error", tt.in, got)
				}
				for _, want := range []string{tt.wantErr, "gh/ORG/REPO", "bitbucket/ORG/REPO", "circleci/ORG-ID/PROJECT-ID"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not mention %q", err, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSlug(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParseSlug(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if got.String() != tt.in {
				t.Errorf("String() = %q, want %q", got.String(), tt.in)
			}
		})
	}
}

// TestRequestPaths checks the exact escaped path each call puts on the wire:
// raw slashes between segments, each segment escaped once, under the host's
// own path prefix.
func TestRequestPaths(t *testing.T) {
	var got chan string
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		got <- r.URL.EscapedPath() + "?" + r.URL.RawQuery
		w.Write([]byte(`{"items":[],"next_page_token":null}`))
	})
	c := newClient(t, srv)
	tests := []struct {
		name string
		call func(t *testing.T) error
		want string
	}{
		{"me", func(t *testing.T) error { _, err := c.Me(t.Context()); return err }, "me?"},
		{"project with space and hash", func(t *testing.T) error {
			_, err := c.Project(t.Context(), mustSlug(t, "gh/my org/re#po"))
			return err
		}, "project/gh/my%20org/re%23po?"},
		{"project with reserved characters", func(t *testing.T) error {
			_, err := c.Project(t.Context(), mustSlug(t, "bitbucket/a?b;c/100%"))
			return err
		}, "project/bitbucket/a%3Fb%3Bc/100%25?"},
		{"circleci slug", func(t *testing.T) error {
			_, err := c.Project(t.Context(), mustSlug(t, "circleci/43G3kM5RtfFE7v5sa4nWAU/44n9pujWcTnVZ2b5S8Fnat"))
			return err
		}, "project/circleci/43G3kM5RtfFE7v5sa4nWAU/44n9pujWcTnVZ2b5S8Fnat?"},
		{"pipelines on a branch", func(t *testing.T) error {
			for _, err := range c.Pipelines(t.Context(), mustSlug(t, "gh/org/repo"), "feature/x y&z") {
				return err
			}
			return nil
		}, "project/gh/org/repo/pipeline?branch=feature%2Fx+y%26z"},
		{"pipelines on all branches", func(t *testing.T) error {
			for _, err := range c.Pipelines(t.Context(), mustSlug(t, "gh/org/repo"), "") {
				return err
			}
			return nil
		}, "project/gh/org/repo/pipeline?"},
		{"pipeline by number", func(t *testing.T) error {
			_, err := c.PipelineByNumber(t.Context(), mustSlug(t, "gh/org/repo"), 1234)
			return err
		}, "project/gh/org/repo/pipeline/1234?"},
		{"pipeline by id", func(t *testing.T) error {
			_, err := c.Pipeline(t.Context(), "5034460f-c7c4-4c43-9457-de07e2029e7b")
			return err
		}, "pipeline/5034460f-c7c4-4c43-9457-de07e2029e7b?"},
		{"id with slash is escaped once", func(t *testing.T) error {
			_, err := c.Pipeline(t.Context(), "a/b%2Fc")
			return err
		}, "pipeline/a%2Fb%252Fc?"},
		{"workflows", func(t *testing.T) error {
			for _, err := range c.Workflows(t.Context(), "p-1") {
				return err
			}
			return nil
		}, "pipeline/p-1/workflow?"},
		{"workflow", func(t *testing.T) error { _, err := c.Workflow(t.Context(), "w-1"); return err }, "workflow/w-1?"},
		{"workflow jobs", func(t *testing.T) error {
			for _, err := range c.WorkflowJobs(t.Context(), "w-1") {
				return err
			}
			return nil
		}, "workflow/w-1/job?"},
		{"job details", func(t *testing.T) error {
			_, err := c.JobDetails(t.Context(), mustSlug(t, "github/org/repo"), 77)
			return err
		}, "project/github/org/repo/job/77?"},
		{"artifacts", func(t *testing.T) error {
			for _, err := range c.Artifacts(t.Context(), mustSlug(t, "gh/my org/repo"), 77) {
				return err
			}
			return nil
		}, "project/gh/my%20org/repo/77/artifacts?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got = make(chan string, 1)
			if err := tt.call(t); err != nil {
				t.Fatal(err)
			}
			if p := <-got; p != apiPath(tt.want) {
				t.Errorf("server saw %s, want %s", p, apiPath(tt.want))
			}
		})
	}
}

func TestInvalidInputsMakeNoRequest(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) { t.Errorf("unexpected request %s", r.URL) })
	c := newClient(t, srv)
	ctx := t.Context()
	if _, err := c.Project(ctx, Slug{VCS: "gh", Org: "..", Repo: "x"}); err == nil {
		t.Error("Project with a '..' segment: no error")
	}
	if _, err := c.Project(ctx, Slug{}); err == nil {
		t.Error("Project with a zero slug: no error")
	}
	for _, err := range c.Artifacts(ctx, Slug{VCS: "gh", Org: "a/b", Repo: "c"}, 1) {
		if err == nil {
			t.Error("Artifacts with a slash in a segment: no error")
		}
	}
	if _, err := c.Pipeline(ctx, ""); err == nil {
		t.Error("Pipeline with empty ID: no error")
	}
	if _, err := c.Workflow(ctx, ".."); err == nil {
		t.Error(`Workflow with ID "..": no error`)
	}
	for _, err := range c.WorkflowJobs(ctx, "") {
		if err == nil {
			t.Error("WorkflowJobs with empty ID: no error")
		}
	}
}
