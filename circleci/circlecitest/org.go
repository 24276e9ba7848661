package circlecitest

import (
	"cmp"
	"slices"
	"strings"
)

// orgID returns the organisation ID of a new project with the canonical
// slug: the ID of the organisation's other projects, if it has any, so that
// circleci/<org-id> names them all. The caller holds w.mu.
func (w *World) orgID(slug string) string {
	id := w.newID("org") // taken whether used or not: the IDs after it stay as they were
	vcs, org, _ := strings.Cut(slug, "/")
	org, _, _ = strings.Cut(org, "/")
	for _, p := range w.projects {
		if pv, po, _ := p.segments(); pv == vcs && po == org {
			return p.orgID
		}
	}
	return id
}

// OrgID returns the ID of the project's organisation, which
// GET /pipeline?org-slug=circleci/<org-id> takes.
func (p *Project) OrgID() string { return p.orgID }

// canonicalOrg maps an org-slug to its short VCS name: github/acme is
// gh/acme.
func canonicalOrg(org string) string {
	return strings.TrimSuffix(canonicalSlug(org+"/x"), "/x")
}

// inOrg reports whether p belongs to the organisation org-slug names:
// vcs/org as in its slug (github/ for gh/, bitbucket/ for bb/), or
// circleci/<org-id> with its organisation's ID.
func (p *Project) inOrg(org string) bool {
	org = canonicalOrg(org)
	return strings.HasPrefix(p.slug, org+"/") || org == "circleci/"+p.orgID
}

// orgPipelines returns the pipelines of org's projects (every project's
// when org is ""), newest first, as GET /pipeline?org-slug= lists them.
// The caller holds w.mu.
func (w *World) orgPipelines(org string) []*Pipeline {
	var pls []*Pipeline
	for _, p := range w.projects {
		if org == "" || p.inOrg(org) {
			pls = append(pls, p.pipelines...)
		}
	}
	slices.SortFunc(pls, func(a, b *Pipeline) int {
		return cmp.Or(b.created.Compare(a.created), strings.Compare(a.project.slug, b.project.slug), cmp.Compare(b.number, a.number))
	})
	return pls
}
