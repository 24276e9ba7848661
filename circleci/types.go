package circleci

import "time"

// User is the owner of the API token (GET /me).
type User struct {
	ID    string `json:"id"`
	Login string `json:"login"`
	Name  string `json:"name"`
}

// Project is a CircleCI project (GET /project/{slug}).
type Project struct {
	Slug             string  `json:"slug"`
	Name             string  `json:"name"`
	ID               string  `json:"id"`
	OrganizationName string  `json:"organization_name"`
	OrganizationSlug string  `json:"organization_slug"`
	OrganizationID   string  `json:"organization_id"`
	VCSInfo          VCSInfo `json:"vcs_info"`
}

// VCSInfo describes a project's repository.
type VCSInfo struct {
	VCSURL string `json:"vcs_url"`
	// Provider is Bitbucket, CircleCI or GitHub, or a value added later.
	Provider      string `json:"provider"`
	DefaultBranch string `json:"default_branch"`
}

// Pipeline is one run of a project's configuration.
type Pipeline struct {
	ID          string     `json:"id"`
	Number      int64      `json:"number"`
	ProjectSlug string     `json:"project_slug"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   *time.Time `json:"updated_at"`
	// State is created, errored, setup-pending, setup or pending, or a value
	// added later.
	State   string          `json:"state"`
	Trigger PipelineTrigger `json:"trigger"`
	// VCS is nil for pipelines not tied to a commit.
	VCS    *PipelineVCS    `json:"vcs"`
	Errors []PipelineError `json:"errors"`
}

// PipelineTrigger says what started a pipeline.
type PipelineTrigger struct {
	// Type is scheduled_pipeline, explicit, api or webhook, or a value added
	// later.
	Type       string    `json:"type"`
	ReceivedAt time.Time `json:"received_at"`
	Actor      struct {
		Login string `json:"login"`
	} `json:"actor"`
}

// PipelineVCS is the commit a pipeline ran on. Branch and Tag are exclusive;
// fields the API sends as null are empty.
type PipelineVCS struct {
	ProviderName        string `json:"provider_name"`
	OriginRepositoryURL string `json:"origin_repository_url"`
	TargetRepositoryURL string `json:"target_repository_url"`
	Revision            string `json:"revision"`
	Branch              string `json:"branch"`
	Tag                 string `json:"tag"`
	ReviewID            string `json:"review_id"`
	ReviewURL           string `json:"review_url"`
	Commit              *struct {
		Subject string `json:"subject"`
		Body    string `json:"body"`
	} `json:"commit"`
}

// PipelineError explains why a pipeline errored.
type PipelineError struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// Workflow is one workflow of a pipeline.
type Workflow struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Status string `json:"status"`
	// CreatedAt is when the workflow was created.
	CreatedAt time.Time `json:"created_at"`
	// StoppedAt is nil while the workflow runs.
	StoppedAt *time.Time `json:"stopped_at"`
	// PipelineID is empty and PipelineNumber nil for legacy (2019) workflows.
	PipelineID     string `json:"pipeline_id"`
	PipelineNumber *int64 `json:"pipeline_number"`
	ProjectSlug    string `json:"project_slug"`
	// Tag is "setup" for a setup workflow, empty otherwise.
	Tag        string `json:"tag"`
	StartedBy  string `json:"started_by"`
	CanceledBy string `json:"canceled_by"`
	ErroredBy  string `json:"errored_by"`
}

// Terminal reports whether the workflow has finished: success, failed,
// error, canceled, not_run or unauthorized. Unknown statuses are not
// terminal.
func (w Workflow) Terminal() bool {
	switch w.Status {
	case "success", "failed", "error", "canceled", "not_run", "unauthorized":
		return true
	}
	return false
}

// Job is one job of a workflow (GET /workflow/{id}/job).
type Job struct {
	// ID is the job's UUID (CIRCLE_WORKFLOW_JOB_ID).
	ID   string `json:"id"`
	Name string `json:"name"`
	// Type is build or approval, or a value added later.
	Type   string `json:"type"`
	Status string `json:"status"`
	// JobNumber is nil for approval jobs and jobs that never ran; only jobs
	// with a number can have artifacts.
	JobNumber *int64 `json:"job_number"`
	// StartedAt is nil for approval jobs (the API sends null).
	StartedAt         *time.Time `json:"started_at"`
	StoppedAt         *time.Time `json:"stopped_at"`
	ProjectSlug       string     `json:"project_slug"`
	Dependencies      []string   `json:"dependencies"`
	ApprovalRequestID string     `json:"approval_request_id"`
	CanceledBy        string     `json:"canceled_by"`
	ApprovedBy        string     `json:"approved_by"`
}

// Terminal reports whether the job has finished: success, failed, retried,
// infrastructure_fail, timedout, terminated-unknown, canceled, not_run or
// unauthorized. Unknown statuses are not terminal.
func (j Job) Terminal() bool {
	return jobStatusTerminal(j.Status)
}

func jobStatusTerminal(status string) bool {
	switch status {
	case "success", "failed", "retried", "infrastructure_fail", "timedout",
		"terminated-unknown", "canceled", "not_run", "unauthorized":
		return true
	}
	return false
}

// JobDetails describes a job by number (GET /project/{slug}/job/{number}).
type JobDetails struct {
	Number int64  `json:"number"`
	Name   string `json:"name"`
	// Status may be empty: the API can send null.
	Status string `json:"status"`
	// Parallelism is how many nodes ran the job; artifacts carry a
	// node_index below it.
	Parallelism  int64         `json:"parallelism"`
	ParallelRuns []ParallelRun `json:"parallel_runs"`
	Pipeline     struct {
		ID string `json:"id"`
	} `json:"pipeline"`
	LatestWorkflow struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"latest_workflow"`
	// Duration is in milliseconds; nil while the job runs.
	Duration  *int64     `json:"duration"`
	CreatedAt *time.Time `json:"created_at"`
	QueuedAt  *time.Time `json:"queued_at"`
	StartedAt *time.Time `json:"started_at"`
	StoppedAt *time.Time `json:"stopped_at"`
	WebURL    string     `json:"web_url"`
	Project   struct {
		ID          string `json:"id"`
		Slug        string `json:"slug"`
		Name        string `json:"name"`
		ExternalURL string `json:"external_url"`
	} `json:"project"`
	Executor struct {
		ResourceClass string `json:"resource_class"`
		Type          string `json:"type"`
	} `json:"executor"`
	Organization struct {
		Name string `json:"name"`
	} `json:"organization"`
}

// Terminal reports whether the job has finished, by the same rule as
// [Job.Terminal].
func (d JobDetails) Terminal() bool {
	return jobStatusTerminal(d.Status)
}

// ParallelRun is the status of one node of a parallel job.
type ParallelRun struct {
	Index  int64  `json:"index"`
	Status string `json:"status"`
}

// Artifact is one file a job stored. The same Path can appear once per
// NodeIndex. URL is where to download it (see [Client.Download]); the API
// gives no size, checksum or timestamp.
type Artifact struct {
	Path      string `json:"path"`
	NodeIndex int64  `json:"node_index"`
	URL       string `json:"url"`
}
