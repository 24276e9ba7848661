package circleci

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Ref is what a project reference names besides the project: a pipeline,
// workflow or job when it is a URL of the CircleCI web app; zero otherwise.
type Ref struct {
	Branch         string // ?branch= of a project's pipelines page
	PipelineNumber int64
	WorkflowID     string
	JobNumber      int64
}

// ParseProject reads a project as people type or paste it: a slug (with a
// trailing slash or an upper-case VCS name, as in "GH/org/repo/"), or a URL
// copied from the CircleCI web app (on circleci.com or a CircleCI Server
// host), which names the project and possibly what to select:
//
//	https://app.circleci.com/pipelines/github/org/repo[?branch=main]
//	https://app.circleci.com/pipelines/github/org/repo/7
//	https://app.circleci.com/pipelines/github/org/repo/7/workflows/<id>
//	https://app.circleci.com/pipelines/github/org/repo/7/workflows/<id>/jobs/8[/...]
//	https://app.circleci.com/settings/project/github/org/repo[/...]
//	https://circleci.com/gh/org/repo/8 (the older job page)
//
// The VCS names of a URL (github, bitbucket) become the short ones (gh, bb)
// that slugs are usually written with.
func ParseProject(s string) (Slug, Ref, error) {
	if !strings.HasPrefix(s, "https://") && !strings.HasPrefix(s, "http://") {
		vcs, rest, _ := strings.Cut(strings.TrimSuffix(s, "/"), "/")
		slug, err := ParseSlug(strings.ToLower(vcs) + "/" + rest)
		if err != nil {
			// The error quotes what was given.
			_, err = ParseSlug(s)
		}
		return slug, Ref{}, err
	}
	bad := func(why string) (Slug, Ref, error) {
		return Slug{}, Ref{}, fmt.Errorf("invalid project %q: %s; give a slug (%s) or the URL of a project, pipeline, workflow or job page of the CircleCI web app", s, why, slugForms)
	}
	u, err := url.Parse(s)
	if err != nil {
		return bad("it is not a URL")
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	var ref Ref
	switch {
	case len(parts) >= 4 && parts[0] == "pipelines":
		parts = parts[1:]
	case len(parts) >= 5 && parts[0] == "settings" && parts[1] == "project":
		parts = parts[2:5] // the project; the rest names a settings page
	case len(parts) == 4 && (parts[0] == "gh" || parts[0] == "bb"): // the older job page
		n, err := strconv.ParseInt(parts[3], 10, 64)
		if err != nil || n <= 0 {
			return bad("it is not a job page")
		}
		parts, ref.JobNumber = parts[:3], n
	default:
		return bad("it is not a CircleCI page of a project")
	}
	slug, err := ParseSlug(shortVCS(strings.ToLower(parts[0])) + "/" + parts[1] + "/" + parts[2])
	if err != nil {
		return bad(err.Error())
	}
	rest := parts[3:]
	if len(rest) == 0 {
		ref.Branch = u.Query().Get("branch")
		return slug, ref, nil
	}
	n, err := strconv.ParseInt(rest[0], 10, 64)
	if err != nil || n <= 0 {
		return bad(fmt.Sprintf("%q is not a pipeline number", rest[0]))
	}
	ref.PipelineNumber = n
	if len(rest) >= 3 && rest[1] == "workflows" {
		ref.PipelineNumber, ref.WorkflowID = 0, rest[2]
		if len(rest) >= 5 && rest[3] == "jobs" {
			n, err := strconv.ParseInt(rest[4], 10, 64)
			if err != nil || n <= 0 {
				return bad(fmt.Sprintf("%q is not a job number", rest[4]))
			}
			ref.WorkflowID, ref.JobNumber = "", n
		}
	}
	return slug, ref, nil
}

func shortVCS(vcs string) string {
	switch vcs {
	case "github":
		return "gh"
	case "bitbucket":
		return "bb"
	}
	return vcs
}
