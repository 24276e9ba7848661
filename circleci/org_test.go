package circleci

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
)

func TestParseOrgSlug(t *testing.T) {
	for in, want := range map[string]string{
		"gh/acme": "gh/acme", "github/acme": "gh/acme", "GitHub/Acme/": "gh/Acme",
		"bb/acme": "bb/acme", "bitbucket/acme": "bb/acme",
		"circleci/43G3kM5RtfFE7v5sa4nWAU": "circleci/43G3kM5RtfFE7v5sa4nWAU",
	} {
		org, err := ParseOrgSlug(in)
		if err != nil || org.String() != want {
			t.Errorf("ParseOrgSlug(%q) = %v, %v; want %s", in, org, err, want)
		}
	}
	for _, bad := range []string{"", "acme", "gh/", "/acme", "gh/acme/widgets", "gl/acme", "gh/..", "gh/a\x00b"} {
		if org, err := ParseOrgSlug(bad); err == nil || !strings.Contains(err.Error(), "gh/ORG") {
			t.Errorf("ParseOrgSlug(%q) = %v, %v; want an error naming the accepted forms", bad, org, err)
		}
	}
}

// TestOrgPipelines: the organisation goes in org-slug on every page.
func TestOrgPipelines(t *testing.T) {
	var items []string
	for i := range 5 {
		items = append(items, fmt.Sprintf(`{"id":"p%d","number":%d,"project_slug":"gh/my org/r%d","state":"created"}`, i, i+1, i))
	}
	c, calls := pagedServer(t, "pipeline", url.Values{"org-slug": {"gh/my org"}}, items)
	org, err := ParseOrgSlug("github/my org")
	if err != nil {
		t.Fatal(err)
	}
	got := collect(t, c.OrgPipelines(t.Context(), org))
	if len(got) != 5 || got[4].ProjectSlug != "gh/my org/r4" || calls.Load() != 3 {
		t.Errorf("got %d pipelines in %d requests: %+v", len(got), calls.Load(), got)
	}
}
