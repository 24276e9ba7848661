package sync

import (
	"slices"
	"strconv"
	"strings"

	"github.com/artifact-sync/artifact-sync/circleci"
)

// Parse reads the project as given on the command line (a slug,
// or a web-app URL that may also name a job, a workflow, a branch or a
// pipeline) into s, together with the --job and --pipeline-number flags,
// which arrive as typed, and checks the whole selection. Every error is a
// UsageError.
func (s *Selection) Parse(project string, jobs []string, pipelineNumber int64) (circleci.Slug, error) {
	slug, ref, err := circleci.ParseProject(project)
	if err != nil {
		return slug, &UsageError{err}
	}
	// A web-app URL names the selection too; a selection flag given
	// beside it is refused by Validate as a second selection.
	if ref.JobNumber > 0 {
		jobs = append(slices.Clip(jobs), strconv.FormatInt(ref.JobNumber, 10))
	}
	if ref.WorkflowID != "" {
		s.Workflows = append(s.Workflows, ref.WorkflowID)
	}
	if ref.Branch != "" && s.Branch == "" {
		s.Branch = ref.Branch
	}
	if ref.PipelineNumber > 0 {
		if pipelineNumber != 0 && pipelineNumber != ref.PipelineNumber {
			return slug, Usagef("the URL names pipeline %d and --pipeline-number %d another: give one", ref.PipelineNumber, pipelineNumber)
		}
		pipelineNumber = ref.PipelineNumber
	}
	for _, j := range jobs {
		if id := strings.TrimSpace(j); circleci.IsUUID(id) {
			if id = strings.ToLower(id); !slices.Contains(s.JobIDs, id) {
				s.JobIDs = append(s.JobIDs, id)
			}
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(j), 10, 64)
		if err != nil || n <= 0 {
			return slug, Usagef("--job %q is neither a job number nor a job ID: give positive numbers such as --job 123,124, "+
				"or the job's UUID (inside a CircleCI job: \"$CIRCLE_WORKFLOW_JOB_ID\")", j)
		}
		if !slices.Contains(s.Jobs, n) {
			s.Jobs = append(s.Jobs, n)
		}
	}
	if pipelineNumber < 0 {
		return slug, Usagef("--pipeline-number %d: give a positive number", pipelineNumber)
	}
	s.PipelineNumber = pipelineNumber
	if err := s.Validate(); err != nil {
		return slug, &UsageError{err}
	}
	return slug, nil
}
