package circlecitest_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
)

// TestContractOrgPipelines checks GET /pipeline?org-slug=… against the
// 2026 document, page by page, for each way of naming an organisation, and
// that it lists the organisation's pipelines and no other's, newest first.
func TestContractOrgPipelines(t *testing.T) {
	_, v2026 := loadSpecs(t)
	w := contractWorld()
	other := w.AddProject("gh/acme/gadgets", "main")
	other.AddPipeline("main").AddWorkflow("ci")
	w.AddProject("gh/elsewhere/tool", "main").AddPipeline("main")
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: contractToken, PageSize: 2})
	c := &contract{t: t, srv: srv, v2026: v2026, validated: make(map[string]int)}

	// walk follows next_page_token and returns each item's project_slug
	// and created_at.
	walk := func(org string) (slugs, created []string) {
		t.Helper()
		tok := ""
		for pages := 0; ; pages++ {
			q := url.Values{"org-slug": {org}}
			if tok != "" {
				q.Set("page-token", tok)
			}
			status, body := c.get("/pipeline", "/pipeline", fetchOpts{query: q})
			if status != http.StatusOK {
				t.Fatalf("GET /pipeline?%s: %d %s", q.Encode(), status, body)
			}
			var pg struct {
				Items []struct {
					ProjectSlug string `json:"project_slug"`
					CreatedAt   string `json:"created_at"`
				} `json:"items"`
				NextPageToken *string `json:"next_page_token"`
			}
			if err := json.Unmarshal(body, &pg); err != nil {
				t.Fatal(err)
			}
			for _, it := range pg.Items {
				slugs, created = append(slugs, it.ProjectSlug), append(created, it.CreatedAt)
			}
			if pg.NextPageToken == nil {
				return slugs, created
			}
			if len(pg.Items) == 0 || pages > 100 {
				t.Fatalf("GET /pipeline?org-slug=%s: endless pages", org)
			}
			tok = *pg.NextPageToken
		}
	}
	distinct := func(s []string) []string {
		s = slices.Clone(s)
		slices.Sort(s)
		return slices.Compact(s)
	}

	acme := []string{"gh/acme/gadgets", "gh/acme/widgets"}
	for _, org := range []string{"gh/acme", "github/acme", "circleci/" + other.OrgID()} {
		slugs, created := walk(org)
		if got := distinct(slugs); !slices.Equal(got, acme) {
			t.Errorf("org %s lists the pipelines of %v, want %v", org, got, acme)
		}
		if len(slugs) != 6 {
			t.Errorf("org %s lists %d pipelines, want 6 (5 of widgets, 1 of gadgets)", org, len(slugs))
		}
		if !slices.IsSortedFunc(created, func(a, b string) int { return strings.Compare(b, a) }) {
			t.Errorf("org %s: pipelines not newest first: %v", org, created)
		}
	}
	gl := "circleci/43G3kM5RtfFE7v5sa4nWAU"
	if slugs, _ := walk(gl); !slices.Equal(distinct(slugs), []string{gl + "/44n9pujWcTnVZ2b5S8Fnat"}) {
		t.Errorf("org %s lists the pipelines of %v", gl, distinct(slugs))
	}
	if slugs, _ := walk("gh/nobody"); len(slugs) != 0 {
		t.Errorf("an organisation with no projects lists %v", slugs)
	}
	status, body := c.get("/pipeline", "/pipeline", fetchOpts{query: url.Values{"org-slug": {"gh/acme"}, "page-token": {"bm9wZQ=="}}})
	if status != http.StatusNotFound || !strings.Contains(string(body), `"message":"Not Found"`) {
		t.Errorf("a bad page token: %d %s", status, body)
	}
	if c.validated["listPipelines OK"] < 4 {
		t.Errorf("validated %v, want several pages of listPipelines", c.validated)
	}
}
