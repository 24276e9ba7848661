package circleci

import (
	"context"
	"fmt"
	"iter"
	"net/url"
	"strings"
)

// OrgSlug names an organisation: vcs/org for GitHub and Bitbucket OAuth
// organisations (gh/acme), or circleci/<org-id> for GitHub App, GitLab and
// Bitbucket Data Center ones. The long VCS names become the short ones.
type OrgSlug struct {
	VCS, Org string
}

// orgForms names the accepted forms in errors.
const orgForms = "gh/ORG, github/ORG, bb/ORG, bitbucket/ORG or circleci/ORG-ID"

// ParseOrgSlug parses an organisation slug: two non-empty segments whose
// first is gh, github, bb, bitbucket or circleci.
func ParseOrgSlug(s string) (OrgSlug, error) {
	// A project slug with a placeholder repo checks the segments alike.
	vcs, org, ok := strings.Cut(strings.TrimSuffix(s, "/"), "/")
	if !ok || strings.Contains(org, "/") {
		return OrgSlug{}, fmt.Errorf("invalid organisation %q: want %s", s, orgForms)
	}
	slug, err := ParseSlug(strings.ToLower(vcs) + "/" + org + "/x")
	if err != nil {
		return OrgSlug{}, fmt.Errorf("invalid organisation %q: want %s", s, orgForms)
	}
	return OrgSlug{VCS: shortVCS(slug.VCS), Org: slug.Org}, nil
}

// String returns the slug with the short VCS name: gh/acme.
func (o OrgSlug) String() string { return o.VCS + "/" + o.Org }

// OrgPipelines iterates over the pipelines of the organisation's projects,
// newest first (GET /pipeline?org-slug=…). CircleCI documents what it
// covers: the most recently built projects (at most 250) that the token's
// user follows. Pages are fetched as the iteration goes, so stop early to
// fetch less.
func (c *Client) OrgPipelines(ctx context.Context, org OrgSlug) iter.Seq2[Pipeline, error] {
	if org.VCS == "" || org.Org == "" {
		return failed[Pipeline](fmt.Errorf("circleci: empty organisation"))
	}
	return list[Pipeline](ctx, c, endpoint{path: "pipeline", query: url.Values{"org-slug": {org.String()}}})
}
