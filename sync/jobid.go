package sync

import (
	"context"
	"fmt"
)

// jobByID resolves a job given by its UUID (--job "$CIRCLE_WORKFLOW_JOB_ID")
// to the same Job a job number gives: its number, name, workflow and
// pipeline, so that the layout's placeholders and the manifest's identity
// (project, job number, node, path) are those of the number.
func (r *resolver) jobByID(ctx context.Context, id string, pipelines *pipelineCache, emit func(Job)) error {
	info, err := r.api.JobByID(ctx, id)
	if err != nil {
		return fmt.Errorf("job %s: %w", id, err)
	}
	if info.ProjectID != "" {
		p, err := r.api.Project(ctx, r.slug)
		if err != nil {
			return fmt.Errorf("project %s: %w", r.slug, err)
		}
		if p.ID != "" && p.ID != info.ProjectID {
			return &explainedError{fmt.Sprintf("job %s belongs to another project than %s: check the project slug", id, r.slug), ErrOtherProject}
		}
	}
	if info.JobNumber == nil || info.Type == "approval" {
		r.log.Warn("job passed over: an approval job, or one that never ran, has no artifacts", "project", r.slug.String(), "job_id", id, "job_name", info.Name)
		return nil
	}
	job := Job{
		Project: r.slug.String(), JobName: info.Name, JobNumber: *info.JobNumber,
		WorkflowID: info.WorkflowID, PipelineID: info.PipelineID,
	}
	if info.WorkflowID != "" {
		w, err := r.api.Workflow(ctx, info.WorkflowID)
		if err != nil {
			return fmt.Errorf("workflow %s of job %s: %w", info.WorkflowID, id, err)
		}
		job.WorkflowName = w.Name
	}
	if !r.sel.matchWorkflow(job.WorkflowName) || !r.sel.matchJob(job.JobName) {
		return nil
	}
	if info.PipelineID != "" {
		p, err := pipelines.get(ctx, info.PipelineID)
		if err != nil {
			return fmt.Errorf("pipeline %s of job %s: %w", info.PipelineID, id, err)
		}
		job.Branch, job.PipelineNumber = pipelineBranch(p), p.Number
	}
	emit(job)
	return nil
}
