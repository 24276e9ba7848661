package sync

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/artifact-sync/artifact-sync/circleci"
)

// Follow configures pull --follow: pull a workflow or pipeline that is
// still running again and again, as its jobs finish, until every job
// worth waiting for is terminal.
type Follow struct {
	On      bool
	Timeout time.Duration // the total wait; 0: DefaultFollowTimeout
	// Self is the UUID of the job running the tool ($CIRCLE_WORKFLOW_JOB_ID),
	// never waited for: it cannot finish before the tool does.
	Self string
	// Initial and Max shape the wait between rounds (defaults 1s and 30s).
	Initial, Max time.Duration
}

// DefaultFollowTimeout bounds the wait of --follow unless --follow-timeout
// says otherwise.
const DefaultFollowTimeout = 2 * time.Hour

// FollowFlags registers --follow and --follow-timeout on f.
func FollowFlags(f *pflag.FlagSet, fo *Follow) {
	f.BoolVar(&fo.On, "follow", false, "with --workflow or --pipeline: pull each job as it finishes until every other job of the workflows is done (not the job running this, $CIRCLE_WORKFLOW_JOB_ID; not approvals on hold, nor jobs waiting on them)")
	f.Var(NewDuration(&fo.Timeout, "2h"), "follow-timeout", "with --follow: stop waiting after this long, keep what was pulled and exit 1 naming the jobs still running")
}

// check refuses --follow with a selection it cannot follow.
func (fo *Follow) check(p *Projects, sel *Selection, dryRun bool) error {
	switch {
	case !fo.On:
		return nil
	case p.Several() || (len(sel.Workflows) == 0 && sel.PipelineID == "" && sel.PipelineNumber == 0):
		return Usagef("--follow follows one project's workflow or pipeline: give --workflow ID, --pipeline ID or --pipeline-number N")
	case dryRun:
		return Usagef("--follow waits for jobs to finish and transfer them; give either --follow or --dry-run")
	case fo.Timeout <= 0:
		return Usagef("--follow-timeout %s: give a positive duration such as 2h", fo.Timeout)
	}
	return nil
}

// follow pulls with pull until no job of sel is left to wait for, or the
// wait has taken fo.Timeout. Whether anything is left is asked before each
// round, so the last round starts once every job has finished and misses
// none. The summary is that of the whole follow: the last round's counts,
// with what every round transferred.
func (fo *Follow) follow(ctx context.Context, api API, slug circleci.Slug, sel *Selection, log *slog.Logger, pull func(*Selection) (*Summary, error)) (*Summary, error) {
	initial, most := cmp0(fo.Initial, time.Second), cmp0(fo.Max, 30*time.Second)
	deadline := time.Now().Add(cmp0(fo.Timeout, DefaultFollowTimeout))
	wait := initial
	total := &Summary{}
	for round := 0; ; round++ {
		left, err := waitingFor(ctx, api, slug, sel, fo.Self)
		if err != nil {
			return total, err
		}
		s := *sel // each round resolves the selection afresh
		s.quietSkips = round > 0
		sum, err := pull(&s)
		total = addRound(total, sum, round)
		if err != nil || len(left) == 0 {
			return total, err
		}
		if time.Now().After(deadline) {
			return total, &FailedError{fmt.Sprintf("still running after --follow-timeout %s: %s (%s); run again to take them",
				fo.Timeout, plural(len(left), "job"), strings.Join(left, ", "))}
		}
		if log != nil {
			log.Info(fmt.Sprintf("waiting for %s still running: %s", plural(len(left), "job"), strings.Join(left, ", ")), "jobs", len(left))
		}
		t := time.NewTimer(min(wait, max(0, time.Until(deadline))))
		select {
		case <-ctx.Done():
			t.Stop()
			return total, ctx.Err()
		case <-t.C:
		}
		wait = min(most, wait*3/2)
	}
}

func cmp0(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// addRound folds one round's summary into the follow's: the last round
// lists (or counts as done) every artifact, so its counts stand, but what
// earlier rounds transferred it counts as skipped.
func addRound(total, sum *Summary, round int) *Summary {
	if sum == nil {
		return total
	}
	if round == 0 {
		return sum
	}
	out := *sum
	out.Transferred += total.Transferred
	out.Skipped = max(0, out.Skipped-total.Transferred)
	out.Bytes += total.Bytes
	out.Elapsed += total.Elapsed
	out.DiskErrors += total.DiskErrors
	out.WrittenAgain += total.WrittenAgain
	return &out
}

// waitingFor names the jobs of sel's workflows still to wait for: jobs
// that have not finished, other than self, approvals on hold and the jobs
// that wait on those or on a job that failed (they may never run).
func waitingFor(ctx context.Context, api API, slug circleci.Slug, sel *Selection, self string) ([]string, error) {
	ids := sel.Workflows
	if len(ids) == 0 {
		pid := sel.PipelineID
		if pid == "" {
			p, err := api.PipelineByNumber(ctx, slug, sel.PipelineNumber)
			if err != nil {
				return nil, fmt.Errorf("pipeline %d of %s: %w", sel.PipelineNumber, slug, err)
			}
			pid = p.ID
		}
		for w, err := range api.Workflows(ctx, pid) {
			if err != nil {
				return nil, fmt.Errorf("workflows of pipeline %s: %w", pid, err)
			}
			if !w.Terminal() {
				ids = append(ids, w.ID)
			}
		}
	}
	var left []string
	for _, id := range ids {
		var jobs []circleci.Job
		for j, err := range api.WorkflowJobs(ctx, id) {
			if err != nil {
				return nil, fmt.Errorf("jobs of workflow %s: %w", id, err)
			}
			jobs = append(jobs, j)
		}
		for _, j := range worthWaiting(jobs, self) {
			if matches(sel.JobNames, j.Name) {
				left = append(left, j.Name)
			}
		}
	}
	slices.Sort(left)
	return left, nil
}

func matches(globs []string, name string) bool {
	return len(globs) == 0 || matchAny(globs, name)
}

// worthWaiting returns the jobs of one workflow that have not finished and
// will: not self, not an approval, and not waiting (through their
// dependencies) on self, on an approval on hold or on a job that ended in
// other than success.
func worthWaiting(jobs []circleci.Job, self string) []circleci.Job {
	byID := make(map[string]circleci.Job, len(jobs))
	for _, j := range jobs {
		byID[j.ID] = j
	}
	stuck := map[string]bool{} // by ID: will not finish before the tool does
	var isStuck func(id string, depth int) bool
	isStuck = func(id string, depth int) bool {
		j, ok := byID[id]
		switch {
		case !ok || depth > len(jobs):
			return false
		case id == self && self != "":
			return true
		case j.Terminal():
			return j.Status != "success"
		case j.Type == "approval":
			return true
		}
		if v, seen := stuck[id]; seen {
			return v
		}
		v := slices.ContainsFunc(j.Dependencies, func(d string) bool { return isStuck(d, depth+1) })
		stuck[id] = v
		return v
	}
	var out []circleci.Job
	for _, j := range jobs {
		if !j.Terminal() && !isStuck(j.ID, 0) {
			out = append(out, j)
		}
	}
	return out
}
