package circleci

import (
	"fmt"
	"net/url"
	"strings"
)

// Slug identifies a project: vcs/org/repo for GitHub and Bitbucket OAuth
// projects, or circleci/<org-id>/<project-id> for GitHub App, GitLab and
// Bitbucket Data Center projects. CircleCI treats it as opaque; this package
// only checks its shape and escapes each segment.
type Slug struct {
	VCS, Org, Repo string
}

// slugForms names the accepted forms in errors.
const slugForms = "gh/ORG/REPO, github/ORG/REPO, bb/ORG/REPO, bitbucket/ORG/REPO or circleci/ORG-ID/PROJECT-ID"

// ParseSlug parses a project slug. It accepts exactly three non-empty
// segments whose first is gh, github, bb, bitbucket or circleci; a segment
// may not be "." or ".." nor contain control characters.
func ParseSlug(s string) (Slug, error) {
	bad := func(why string) (Slug, error) {
		return Slug{}, fmt.Errorf("invalid project slug %q: %s; want %s", s, why, slugForms)
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return bad("it contains control characters")
	}
	parts := strings.Split(s, "/")
	if len(parts) != 3 {
		return bad(fmt.Sprintf("it has %d segments, not 3", len(parts)))
	}
	for _, p := range parts {
		switch p {
		case "":
			return bad("it has an empty segment")
		case ".", "..":
			return bad(fmt.Sprintf("segment %q is not allowed", p))
		}
	}
	switch parts[0] {
	case "gh", "github", "bb", "bitbucket", "circleci":
	default:
		return bad(fmt.Sprintf("unknown VCS %q", parts[0]))
	}
	return Slug{VCS: parts[0], Org: parts[1], Repo: parts[2]}, nil
}

// String returns the slug as it was given to ParseSlug.
func (s Slug) String() string {
	return s.VCS + "/" + s.Org + "/" + s.Repo
}

// IsZero reports whether s is the zero Slug.
func (s Slug) IsZero() bool {
	return s == Slug{}
}

// pathSegments returns the slug's segments for a request path; each is
// escaped on its own, so the separators stay raw slashes.
func (s Slug) pathSegments() ([]string, error) {
	if _, err := ParseSlug(s.String()); err != nil {
		return nil, err
	}
	return []string{s.VCS, s.Org, s.Repo}, nil
}

// escapePath joins segments into an escaped path, each one escaped with
// url.PathEscape (so a "/" inside a segment becomes %2F and nothing is
// escaped twice).
func escapePath(segments ...string) string {
	esc := make([]string, len(segments))
	for i, s := range segments {
		esc[i] = url.PathEscape(s)
	}
	return strings.Join(esc, "/")
}

// IsUUID reports whether s has the shape of the IDs CircleCI gives
// pipelines, workflows and jobs.
func IsUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
				return false
			}
		}
	}
	return true
}
