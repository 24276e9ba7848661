package sync

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"
)

// Report prints the run's summary to w. For one project it is that
// project's summary, as Summary.Report prints it (a run stopped before it
// began prints nothing but for scripts, who get the summary whatever
// happened). For several: a line per project and one of totals, or with
// asJSON one object whose top-level counts are the totals, with a
// "projects" list of each project's summary, its exit code and error.
func (r *Run) Report(w io.Writer, o Outcome, asJSON, quiet bool) {
	if r == nil || !r.Several {
		s := &Summary{Failures: []Failure{}}
		if r != nil {
			s = r.single
		}
		if asJSON || o.Err == nil || s.Began(o) {
			s.Report(w, o, asJSON, quiet)
		}
		return
	}
	total := r.Totals()
	if asJSON {
		r.reportJSON(w, total, o)
		return
	}
	if len(r.Projects) == 0 && o.Err != nil {
		return // stopped before it found its projects: the error says it all
	}
	var notPulled int
	for _, p := range r.Projects {
		if p.Err != nil && !p.Summary.Began(Outcome{}) || !p.Started {
			notPulled++
		}
		if quiet && p.Err == nil {
			continue
		}
		r.reportProject(w, p)
	}
	if quiet && o.Err == nil {
		return
	}
	rate := float64(total.Bytes) / max(total.Elapsed.Seconds(), 0.001)
	line := fmt.Sprintf("%s: %d artifacts: %d transferred (%s in %s, %s/s), %d already done, %d failed",
		plural(len(r.Projects), "project"), total.Artifacts, total.Transferred, HumanBytes(total.Bytes),
		total.Elapsed.Round(10*time.Millisecond), HumanBytes(int64(rate)), total.Skipped, total.artifactsFailed())
	if total.DryRun {
		line = fmt.Sprintf("dry run: %s: %d artifacts: %d to transfer, %d already done, %d refused",
			plural(len(r.Projects), "project"), total.Artifacts, total.NotStarted(), total.Skipped, total.artifactsFailed())
	}
	if notPulled > 0 {
		line += fmt.Sprintf("; %d not pulled", notPulled)
	}
	fmt.Fprintln(w, line)
	if o.Interrupted {
		fmt.Fprintf(w, "to resume: %s\n", Printable(ResumeCommand(o.Args)))
	}
}

// reportProject prints one project's lines: its summary, first line
// headed by its slug, or why it was not pulled.
func (r *Run) reportProject(w io.Writer, p ProjectSummary) {
	name := Printable(p.Project)
	switch {
	case !p.Started:
		fmt.Fprintf(w, "%s: not started\n", name)
		return
	case p.Err != nil && !p.Summary.Began(Outcome{}):
		fmt.Fprintf(w, "%s: not pulled: %s\n", name, Printable(projectMessage(p.Err)))
		return
	}
	var b bytes.Buffer
	p.Summary.Report(&b, Outcome{}, false, false)
	fmt.Fprintf(w, "%s: %s", name, b.String())
	var failed *FailedError
	if p.Err != nil && !errors.As(p.Err, &failed) {
		fmt.Fprintf(w, "  stopped: %s\n", Printable(OneLine(p.Err.Error())))
	}
}

// Totals adds up the projects' summaries: the run's counts, its
// destination and its time.
func (r *Run) Totals() *Summary {
	t := &Summary{Destination: r.Destination, Elapsed: r.Elapsed, Failures: []Failure{}}
	for _, p := range r.Projects {
		s := p.Summary
		t.DryRun = s.DryRun
		t.Artifacts += s.Artifacts
		t.Transferred += s.Transferred
		t.Skipped += s.Skipped
		t.Failed += s.Failed
		t.Bytes += s.Bytes
		t.DiskErrors += s.DiskErrors
		t.WrittenAgain += s.WrittenAgain
		t.InFlight += s.InFlight
		t.KeptBytes += s.KeptBytes
		t.JobsFailed += s.JobsFailed
		t.Failures = append(t.Failures, s.Failures...)
	}
	return t
}

// projectFailure is a failure in the run's --json totals: which project's.
type projectFailure struct {
	Project string `json:"project"`
	Failure
}

// projectReport is one project's object in the run's --json "projects".
type projectReport struct {
	Project string `json:"project"`
	pullReport
	Started  bool `json:"started"`
	ExitCode int  `json:"exit_code"`
}

func (r *Run) reportJSON(w io.Writer, total *Summary, o Outcome) {
	out := struct {
		pullReport
		Failures []projectFailure `json:"failures"`
		Projects []projectReport  `json:"projects"`
	}{
		pullReport: pullReport{Summary: total, NotStarted: total.NotStarted(), Error: o.message(), FailedByCause: groupFailures(total.Failures)},
		Failures:   []projectFailure{},
		Projects:   []projectReport{},
	}
	if o.Err != nil {
		out.ExitCode = o.ExitCode
	}
	for _, p := range r.Projects {
		s := p.Summary
		if s.Failures == nil {
			s.Failures = []Failure{}
		}
		for _, f := range s.Failures {
			out.Failures = append(out.Failures, projectFailure{Project: p.Project, Failure: f})
		}
		pr := projectReport{Project: p.Project, Started: p.Started, ExitCode: p.ExitCode,
			pullReport: pullReport{Summary: s, NotStarted: s.NotStarted(), FailedByCause: groupFailures(s.Failures)}}
		if p.Err != nil {
			pr.Error = projectMessage(p.Err)
		}
		if !p.Started && o.Interrupted {
			pr.Error, pr.ExitCode = "not started: interrupted", o.ExitCode
		}
		out.Projects = append(out.Projects, pr)
	}
	writeJSON(w, out)
}
