package circleci

import (
	"strings"
	"testing"
)

func TestParseProject(t *testing.T) {
	const wf = "5034460f-c7c4-4c43-9457-de07e2029e7b"
	gh := Slug{"gh", "acme", "widgets"}
	for _, tc := range []struct {
		in   string
		slug Slug
		ref  Ref
	}{
		{"gh/acme/widgets", gh, Ref{}},
		{"gh/acme/widgets/", gh, Ref{}},
		{"GH/acme/widgets", gh, Ref{}},
		{"GitHub/acme/widgets", Slug{"github", "acme", "widgets"}, Ref{}},
		{"https://app.circleci.com/pipelines/github/acme/widgets", gh, Ref{}},
		{"https://app.circleci.com/pipelines/github/acme/widgets?branch=main", gh, Ref{Branch: "main"}},
		{"https://app.circleci.com/pipelines/github/acme/widgets/7", gh, Ref{PipelineNumber: 7}},
		{"https://app.circleci.com/pipelines/github/acme/widgets/7/", gh, Ref{PipelineNumber: 7}},
		{"https://app.circleci.com/pipelines/github/acme/widgets/7/workflows/" + wf, gh, Ref{WorkflowID: wf}},
		{"https://app.circleci.com/pipelines/github/acme/widgets/7/workflows/" + wf + "/jobs/8", gh, Ref{JobNumber: 8}},
		{"https://app.circleci.com/pipelines/github/acme/widgets/7/workflows/" + wf + "/jobs/8/artifacts", gh, Ref{JobNumber: 8}},
		{"https://app.circleci.com/pipelines/bitbucket/acme/widgets/3", Slug{"bb", "acme", "widgets"}, Ref{PipelineNumber: 3}},
		{"https://app.circleci.com/pipelines/circleci/43G3kM5RtfFE7v5sa4nWAU/44n9pujWcTnVZ2b5S8Fnat/12", Slug{"circleci", "43G3kM5RtfFE7v5sa4nWAU", "44n9pujWcTnVZ2b5S8Fnat"}, Ref{PipelineNumber: 12}},
		{"https://app.circleci.com/settings/project/github/acme/widgets/environment-variables", gh, Ref{}},
		{"https://circleci.com/gh/acme/widgets/8", gh, Ref{JobNumber: 8}},
		{"https://circleci.example.com/pipelines/gh/acme/widgets/2", gh, Ref{PipelineNumber: 2}},
	} {
		slug, ref, err := ParseProject(tc.in)
		if err != nil || slug != tc.slug || ref != tc.ref {
			t.Errorf("ParseProject(%q) = %v, %+v, %v; want %v, %+v", tc.in, slug, ref, err, tc.slug, tc.ref)
		}
	}
	for _, in := range []string{"gh/acme", "https://app.circleci.com/dashboard", "https://app.circleci.com/pipelines/github/acme", "https://app.circleci.com/pipelines/github/acme/widgets/seven", "gl/acme/widgets"} {
		if _, _, err := ParseProject(in); err == nil || !strings.Contains(err.Error(), "gh/ORG/REPO") {
			t.Errorf("ParseProject(%q): %v, want an error naming the accepted forms", in, err)
		}
	}
}
