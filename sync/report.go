package sync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Outcome is how a pull or verify ended, for its report: the error that
// ended it (nil if none), the exit code the command line gives for it, and
// the command line that resumes it.
type Outcome struct {
	Err         error
	ExitCode    int
	Interrupted bool     // stopped by a signal: Err reads "interrupted"
	Args        []string // the command line as given, for the resume hint
}

// message is the error as one line, or "interrupted".
func (o Outcome) message() string {
	switch {
	case o.Err == nil:
		return ""
	case o.Interrupted:
		return "interrupted"
	}
	return OneLine(o.Err.Error())
}

// OneLine joins a message's lines and collapses its runs of spaces.
func OneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

// Err is the error a finished pull ends with when it did not do everything
// (nil when it did): some artifacts failed, or the disk failed to flush.
func (s *Summary) Err() error {
	if s.Failed > 0 {
		var what []string
		if n := s.artifactsFailed(); n > 0 {
			what = append(what, fmt.Sprintf("%d of %d artifacts failed", n, s.Artifacts))
		}
		if s.JobsFailed > 0 {
			what = append(what, fmt.Sprintf("listing the artifacts of %s failed", plural(s.JobsFailed, "job")))
		}
		return &FailedError{strings.Join(what, ", and ") + "; run the same command again to retry them"}
	}
	if s.DiskErrors > 0 {
		// Everything was written again, but the disk is failing: exit 1
		// so that whoever runs this hears of it.
		msg := fmt.Sprintf("the disk at %s failed to flush (%d times)", s.Destination, s.DiskErrors)
		if s.WrittenAgain > 0 {
			msg += fmt.Sprintf("; the %d artifacts it covered were written again and recorded", s.WrittenAgain)
		}
		return &FailedError{msg + "; check the disk (dmesg, free space)"}
	}
	return nil
}

// artifactsFailed counts the artifacts that failed, leaving out the jobs
// whose listing failed (which Failed counts too, and which have no
// artifacts to count).
func (s *Summary) artifactsFailed() int { return s.Failed - s.JobsFailed }

// plural is n and noun, with an s unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// Began reports whether the run got as far as the artifacts, so that a
// summary has something to say beyond the error: one was transferred,
// skipped or failed, or the run was interrupted with artifacts left.
func (s *Summary) Began(o Outcome) bool {
	return s.Transferred+s.Skipped+s.Failed > 0 || (s.Artifacts > 0 && o.Interrupted)
}

// pullReport is pull's --json summary: the run's counts, and when it did
// not succeed, why and with which exit code.
type pullReport struct {
	*Summary
	NotStarted int    `json:"not_started"`
	Error      string `json:"error,omitempty"`
	ExitCode   int    `json:"exit_code,omitempty"`
	// FailedByCause groups the failures by cause, as the summary for
	// people does; each failure is also in failures, with its cause.
	FailedByCause []FailureGroup `json:"failed_by_cause,omitempty"`
}

// Report prints pull's summary to w: one JSON object with asJSON, otherwise
// a few lines for people (with quiet only when something failed or was
// left).
func (s *Summary) Report(w io.Writer, o Outcome, asJSON, quiet bool) {
	if s.Failures == nil {
		s.Failures = []Failure{}
	}
	r := pullReport{Summary: s, NotStarted: s.NotStarted(), Error: o.message(), FailedByCause: groupFailures(s.Failures)}
	if o.Err != nil {
		r.ExitCode = o.ExitCode
	}
	if asJSON {
		writeJSON(w, r)
		return
	}
	if s.DryRun {
		line := fmt.Sprintf("dry run: %d artifacts: %d to transfer, %d already done, %d refused",
			s.Artifacts, r.NotStarted, s.Skipped, s.artifactsFailed())
		if s.JobsFailed > 0 {
			line += fmt.Sprintf("; the artifacts of %s could not be listed", plural(s.JobsFailed, "job"))
		}
		fmt.Fprintln(w, line)
		return
	}
	if quiet && s.Failed == 0 && s.Unfinished() == "" {
		return
	}
	rate := float64(s.Bytes) / max(s.Elapsed.Seconds(), 0.001)
	line := fmt.Sprintf("%d artifacts: %d transferred (%s in %s, %s/s), %d already done, %d failed",
		s.Artifacts, s.Transferred, HumanBytes(s.Bytes), s.Elapsed.Round(10*time.Millisecond),
		HumanBytes(int64(rate)), s.Skipped, s.artifactsFailed())
	line += s.Unfinished()
	if s.DiskErrors > 0 {
		line += fmt.Sprintf(", %d written again after the disk failed to flush", s.WrittenAgain)
	}
	if s.JobsFailed > 0 {
		line += fmt.Sprintf("; the artifacts of %s could not be listed", plural(s.JobsFailed, "job"))
	}
	if s.FinishedJobs > 0 {
		line += fmt.Sprintf("; %s finished in an earlier run, not listed again", plural(s.FinishedJobs, "job"))
	}
	fmt.Fprintln(w, line)
	reportFailures(w, s.Failures)
	for _, p := range s.Passed {
		fmt.Fprintf(w, "  passed over: job %d %s (%s): %s\n", p.JobNumber, Printable(p.JobName), Printable(p.WorkflowName), Printable(p.Reason))
	}
	if o.Interrupted {
		fmt.Fprintf(w, "to resume: %s\n", Printable(ResumeCommand(o.Args)))
	}
}

// Err is the error of a verify that found problems at dest, nil if none.
func (r *VerifyResult) Err() error {
	if r.Problems == 0 {
		return nil
	}
	return &FailedError{fmt.Sprintf("verify found %d problem(s) at %s; a plain pull fetches missing and resized files again, pull --verify also those changed at the same size, unexpected ones are left alone", r.Problems, r.Destination)}
}

// Report prints verify's result to w: one JSON object with asJSON,
// otherwise a line of counts and one line per problem.
func (r *VerifyResult) Report(w io.Writer, o Outcome, asJSON bool) {
	if asJSON {
		out := struct {
			*VerifyResult
			Error    string `json:"error,omitempty"`
			ExitCode int    `json:"exit_code,omitempty"`
		}{VerifyResult: r, Error: o.message()}
		if o.Err != nil {
			out.ExitCode = o.ExitCode
		}
		writeJSON(w, out)
		return
	}
	if r.Checked > 0 {
		fmt.Fprintf(w, "%d artifacts checked: %d intact, %d missing, %d changed, %d unexpected\n",
			r.Checked, r.Intact, len(r.Missing), len(r.Changed), len(r.Unexpected))
	}
	for _, f := range r.Failures {
		fmt.Fprintf(w, "  %s: job %d node %d %q\n", Printable(f.Error), f.JobNumber, f.NodeIndex, f.Path)
	}
	for _, k := range r.Unexpected {
		fmt.Fprintf(w, "  unexpected: %s\n", Printable(k))
	}
}

// ReportError prints, for a command that ended in an error before it
// printed anything, the one JSON object that scripts which asked for JSON
// get for every outcome: the error's message and the exit code.
func ReportError(w io.Writer, msg string, code int) {
	writeJSON(w, struct {
		Error    string `json:"error"`
		ExitCode int    `json:"exit_code"`
	}{msg, code})
}

func writeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// ResumeCommand is the command line args, to run again: the token given
// with --token is left out (it never appears in output).
func ResumeCommand(args []string) string {
	words := []string{"artifact-sync"}
	for i := 0; i < len(args); i++ {
		arg := args[i]
		switch {
		case arg == "--token":
			i++
			continue
		case strings.HasPrefix(arg, "--token="):
			continue
		}
		words = append(words, ShellQuote(arg))
	}
	return strings.Join(words, " ")
}

// ShellQuote quotes s for a POSIX shell when it needs quoting.
func ShellQuote(s string) string {
	if s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,@%+", r))
	}) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Interrupted says that a command was stopped by a signal, and what else
// went wrong while it stopped, rather than "context canceled"; for a pull
// (resumes) that nothing else went wrong, that a rerun resumes.
func Interrupted(err error, resumes bool) string {
	msg := "interrupted"
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if !errors.Is(e, context.Canceled) {
				msg += "; " + OneLine(e.Error())
			}
		}
	}
	if msg == "interrupted" && resumes {
		msg += "; what finished is recorded: run the same command again to resume"
	}
	return msg
}
