package sync

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/artifact-sync/artifact-sync/circleci"
	"github.com/artifact-sync/artifact-sync/sink"
)

// OrgAPI is what finding an organisation's projects needs from the client.
type OrgAPI interface {
	OrgPipelines(ctx context.Context, org circleci.OrgSlug) iter.Seq2[circleci.Pipeline, error]
}

// Projects are the projects a list or pull covers, as the command line
// gives them: PROJECT-SLUG arguments, --projects-from and --org, merged,
// then cut down to --shard.
//
// One PROJECT-SLUG argument alone is a run over one project, as it always
// was: its state and artifacts are at DEST. Otherwise (several arguments,
// --projects-from or --org) each project keeps its own state and artifacts
// under DEST/<its slug>/ (DEST/gh/acme/widgets/), so that projects never
// contend for one lock, and a project keeps its place whether the list it
// came from holds one project or many and whichever shard runs it.
type Projects struct {
	Args  []string // PROJECT-SLUG arguments: slugs, or one web-app URL
	From  string   // --projects-from: a file of slugs, one a line; "-" is stdin
	Org   string   // --org: an organisation slug (gh/acme, circleci/<org-id>)
	Shard Shard    // --shard
	// Since bounds --org to the projects with a pipeline created since
	// then; zero takes every pipeline the API lists for the organisation.
	Since time.Time
	Stdin io.Reader // for From "-"; nil is os.Stdin

	org   circleci.OrgSlug
	given []circleci.Slug // from Args, then From
}

// ProjectFlags defines --projects-from, --org and --shard in f.
func ProjectFlags(f *pflag.FlagSet, p *Projects) {
	f.StringVar(&p.From, "projects-from", "", "also the projects listed in `FILE`, one slug per line (# starts a comment; - reads stdin)")
	f.StringVar(&p.Org, "org", "", "also the projects of the organisation `ORG-SLUG` (gh/ORG, bb/ORG, circleci/ORG-ID) that CircleCI lists pipelines of: those the token's user follows, the 250 most recently built")
	f.Var(&p.Shard, "shard", "keep only the projects that rendezvous hashing of their slugs assigns to shard I of N (0/1: all), to spread a run over N machines")
}

// Several reports whether each project keeps its state under its own
// prefix of DEST: the projects come from a list, not from one argument.
func (p *Projects) Several() bool {
	return len(p.Args) > 1 || p.From != "" || p.Org != ""
}

// CheckArgs is a cobra.PositionalArgs for list and pull: some project must
// be given, as arguments, --projects-from or --org.
func (p *Projects) CheckArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 && p.From == "" && p.Org == "" {
		return Usagef("%s needs a PROJECT-SLUG such as gh/org/repo, --projects-from FILE or --org ORG-SLUG (see '%s --help')", cmd.Name(), cmd.CommandPath())
	}
	return nil
}

// Parse reads the project arguments, --projects-from and the selection
// flags (see Selection.Parse), before any request is made. With several projects a
// URL that names a job, workflow, pipeline or branch, and the flags that
// name one project's jobs (--job, --pipeline, --pipeline-number,
// --workflow), are refused. Every error is a UsageError.
func (p *Projects) Parse(args []string, sel *Selection, jobs []string, pipelineNumber int64) error {
	p.Args = args
	if !p.Several() {
		slug, err := sel.Parse(args[0], jobs, pipelineNumber)
		p.given = []circleci.Slug{slug}
		return err
	}
	if p.Org != "" {
		org, err := circleci.ParseOrgSlug(p.Org)
		if err != nil {
			return Usagef("--org: %v", err)
		}
		p.org = org
	}
	p.given = nil
	for _, a := range args {
		slug, err := parseListed(a)
		if err != nil {
			return &UsageError{err}
		}
		p.given = append(p.given, slug)
	}
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"--job", len(jobs) > 0}, {"--pipeline", sel.PipelineID != ""},
		{"--pipeline-number", pipelineNumber != 0}, {"--workflow", len(sel.Workflows) > 0},
	} {
		if f.set {
			return Usagef("%s names one project's jobs: give it with one PROJECT-SLUG, not with several projects (--org, --projects-from or more than one slug); select across projects with --branch, --pipelines and the filters", f.name)
		}
	}
	if p.From != "" {
		listed, err := p.readFrom()
		if err != nil {
			return err
		}
		p.given = append(p.given, listed...)
	}
	if err := sel.Validate(); err != nil {
		return &UsageError{err}
	}
	return nil
}

// parseListed reads one project of several: a slug, or the URL of a
// project's page (one that names nothing else).
func parseListed(s string) (circleci.Slug, error) {
	slug, ref, err := circleci.ParseProject(s)
	if err != nil {
		return slug, err
	}
	if ref != (circleci.Ref{}) {
		return slug, fmt.Errorf("%s names a job, workflow, pipeline or branch of %s: with several projects give each as a slug, and select with --branch, --pipelines and the filters", s, slug)
	}
	return slug, nil
}

// Resolve returns the projects to cover: the arguments, then the file's
// (read by Parse), then the organisation's (sorted), with duplicates merged (gh/ and
// github/ are one; see ShardKey), then those on this shard. With one
// project argument on another shard it returns none and says so on log.
func (p *Projects) Resolve(ctx context.Context, api OrgAPI, log *slog.Logger) ([]circleci.Slug, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	all := slices.Clone(p.given)
	if p.Org != "" {
		found, err := OrgProjects(ctx, api, p.org, p.Since)
		if err != nil {
			return nil, err
		}
		if len(found) == 0 {
			log.Warn("CircleCI lists no pipelines of the organisation's projects: check --org, and that the token's user follows its projects", "org", p.org.String())
		}
		all = append(all, found...)
	}
	seen := map[string]bool{}
	var kept []circleci.Slug
	for _, slug := range all {
		k := ShardKey(slug)
		if seen[k] {
			continue
		}
		seen[k] = true
		if p.Several() {
			slug.VCS = canonicalVCS(slug.VCS)
		}
		if p.Shard.Takes(slug) {
			kept = append(kept, slug)
		}
	}
	switch {
	case p.Shard.Count <= 1:
	case !p.Several() && len(kept) == 0:
		log.Info(fmt.Sprintf("%s falls on shard %d of %d, not %d: nothing selected", p.given[0], ShardOf(p.given[0], p.Shard.Count), p.Shard.Count, p.Shard.Index),
			"project", p.given[0].String())
	default:
		log.Info(fmt.Sprintf("shard %s: %d of %d projects", p.Shard.String(), len(kept), len(seen)))
	}
	return kept, nil
}

// readFrom reads --projects-from: one project a line; blank lines and what
// follows a # are left out.
func (p *Projects) readFrom() ([]circleci.Slug, error) {
	var r io.Reader
	name := p.From
	if name == "-" {
		name, r = "stdin", p.Stdin
		if r == nil {
			r = os.Stdin
		}
	} else {
		f, err := os.Open(p.From)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, Usagef("--projects-from %s does not exist: give a file that lists one project slug per line", p.From)
			}
			return nil, Usagef("--projects-from %s: %v", p.From, sink.ExplainFS(err, "--projects-from"))
		}
		defer f.Close()
		r = f
	}
	var slugs []circleci.Slug
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		slug, err := parseListed(line)
		if err != nil {
			return nil, Usagef("--projects-from %s line %d: %v", name, n, err)
		}
		slugs = append(slugs, slug)
	}
	if err := sc.Err(); err != nil {
		return nil, Usagef("--projects-from %s: %v", name, err)
	}
	return slugs, nil
}

// OrgProjects returns the projects of org that have pipelines, sorted, as
// GET /pipeline?org-slug= lists them: CircleCI covers the projects the
// token's user follows, the 250 most recently built. With a non-zero since
// it stops at the first pipeline created before since (the list is newest
// first, so the pages after it hold none of the window); with a zero since
// it takes every page the API gives.
func OrgProjects(ctx context.Context, api OrgAPI, org circleci.OrgSlug, since time.Time) ([]circleci.Slug, error) {
	seen := map[string]bool{}
	var found []circleci.Slug
	for pl, err := range api.OrgPipelines(ctx, org) {
		if err != nil {
			return nil, fmt.Errorf("projects of organisation %s: %w", org, err)
		}
		if !since.IsZero() && pl.CreatedAt.Before(since) {
			break
		}
		slug, err := circleci.ParseSlug(pl.ProjectSlug)
		if err != nil || seen[ShardKey(slug)] {
			continue // a slug this tool cannot address is no project it can pull
		}
		seen[ShardKey(slug)] = true
		found = append(found, slug)
	}
	slices.SortFunc(found, func(a, b circleci.Slug) int { return strings.Compare(a.String(), b.String()) })
	return found, nil
}

// projectMessage is what err says of a project in a run over several, in
// one line: a 404 from the API is the project's own (the flags that name a
// pipeline or workflow are refused there), so it says what CircleCI's
// answer means rather than which request got it.
func projectMessage(err error) string {
	if errors.Is(err, circleci.ErrNotFound) {
		return "not found: renamed or deleted, or the token cannot see it (CircleCI answers 404 for a private project the token cannot read)"
	}
	return OneLine(err.Error())
}

// ProjectsError is the error of a run over several projects in which some
// did not complete: Code is the worst of their exit codes.
type ProjectsError struct {
	Code int
	Msg  string
}

func (e *ProjectsError) Error() string { return e.Msg }

// projectOutcome is how one project of a run ended.
type projectOutcome struct {
	slug    circleci.Slug
	err     error
	code    int
	started bool
}

// projectsError sums up outcomes into the run's error (nil if every
// project completed).
func projectsError(ctx context.Context, outcomes []projectOutcome, total int) error {
	var failed []projectOutcome
	worst := 0
	for _, o := range outcomes {
		if o.code != 0 {
			failed = append(failed, o)
			worst = max(worst, o.code)
		}
	}
	if ctx.Err() != nil && len(outcomes) < total {
		worst = max(worst, 130)
	}
	if worst == 0 {
		return nil
	}
	if len(failed) == 0 {
		return &ProjectsError{Code: worst, Msg: "interrupted"}
	}
	msg := fmt.Sprintf("%d of %d projects did not complete: %s: %s", len(failed), total, failed[0].slug, projectMessage(failed[0].err))
	if len(failed) > 1 {
		msg += fmt.Sprintf("; and %d more, named in the summary", len(failed)-1)
	}
	return &ProjectsError{Code: worst, Msg: msg}
}

// ListProjects lists the artifacts of each project p selects, one after
// another, with sel applied to each: a table per project under its slug, or
// the JSON lines (each names its project). A project that fails (not
// found, forbidden, a listing that fails) is reported on log and the
// others go on; the error then carries the worst exit code of theirs, as
// code gives it.
func ListProjects(ctx context.Context, api API, org OrgAPI, p *Projects, sel *Selection, opts ListOptions, code func(error) int) error {
	slugs, err := p.Resolve(ctx, org, opts.Log)
	if err != nil || len(slugs) == 0 {
		return err
	}
	if !p.Several() {
		return List(ctx, api, slugs[0], sel, opts)
	}
	var outcomes []projectOutcome
	for i, slug := range slugs {
		if ctx.Err() != nil {
			break
		}
		if !opts.JSON {
			if i > 0 {
				fmt.Fprintln(opts.Out)
			}
			fmt.Fprintf(opts.Out, "%s:\n", slug)
		}
		s := *sel
		err := List(ctx, api, slug, &s, opts)
		o := projectOutcome{slug: slug, err: err}
		if err != nil {
			o.code = code(err)
			if ctx.Err() == nil && !opts.JSON {
				fmt.Fprintf(opts.Out, "  error: %s\n", Printable(projectMessage(err)))
			}
			if ctx.Err() == nil && opts.Log != nil {
				opts.Log.Warn("listing the project failed; going on with the others", "project", slug.String(), "error", projectMessage(err))
			}
		}
		outcomes = append(outcomes, o)
	}
	return projectsError(ctx, outcomes, len(slugs))
}

// RunOptions configure a pull over the projects of a command line.
type RunOptions struct {
	// ExitCode is the command line's exit code for an error.
	ExitCode func(error) int
	// NewProgress returns the display of one project's transfers; nil (or
	// a nil Progress) means none.
	NewProgress func() Progress
	// Follow, when on, pulls one project's workflow or pipeline again as
	// its jobs finish (pull --follow).
	Follow Follow
}

// ProjectSummary is one project's part of a run over several.
type ProjectSummary struct {
	Project  string
	Summary  *Summary
	Err      error
	ExitCode int
	Started  bool
}

// Run is what a pull over the projects of a command line did.
type Run struct {
	Several     bool
	Projects    []ProjectSummary // with Several: one per project selected, in order
	Destination string
	Elapsed     time.Duration

	single *Summary // without Several
}

// PullProjects pulls each project p selects into its place at dest (see
// Projects), one after another, sharing api and its bound on requests in
// flight; sel applies to each. A project that fails (not found, forbidden,
// its lock held, artifacts that failed) is counted and the others go on;
// cancellation stops the run. It returns the run even on error; the error
// of a run over several projects is a *ProjectsError with the worst exit
// code of theirs, that of one project its own.
func PullProjects(ctx context.Context, api API, dl Downloader, org OrgAPI, p *Projects, sel *Selection, dest Destination, opts PullOptions, ro RunOptions) (*Run, error) {
	start := time.Now()
	run := &Run{Several: p.Several(), Destination: dest.To, single: &Summary{DryRun: opts.DryRun, Failures: []Failure{}}}
	defer func() { run.Elapsed = time.Since(start) }()
	if err := ro.Follow.check(p, sel, opts.DryRun); err != nil {
		return run, err
	}
	slugs, err := p.Resolve(ctx, org, opts.Log)
	if err != nil {
		return run, err
	}
	if !run.Several {
		if len(slugs) == 0 {
			return run, nil
		}
		pull := func(s *Selection) (*Summary, error) { return pullOne(ctx, api, dl, slugs[0], s, dest, opts, ro) }
		if ro.Follow.On {
			run.single, err = ro.Follow.follow(ctx, api, slugs[0], sel, opts.Log, pull)
		} else {
			run.single, err = pull(sel)
		}
		if err == nil {
			err = run.single.Err()
		}
		return run, err
	}
	for _, slug := range slugs {
		run.Projects = append(run.Projects, ProjectSummary{Project: slug.String(), Summary: &Summary{DryRun: opts.DryRun, Failures: []Failure{}}})
	}
	if !strings.HasPrefix(dest.To, "s3://") {
		_, statErr := os.Stat(dest.To)
		defer removeEmptyDirs(dest.To, slugs, errors.Is(statErr, fs.ErrNotExist))
	}
	var outcomes []projectOutcome
	for i, slug := range slugs {
		if ctx.Err() != nil {
			break
		}
		d := projectDest(dest, slug)
		if opts.Log != nil {
			opts.Log.Info("pulling project", "project", slug.String(), "destination", d.To)
		}
		s := *sel
		popts := opts
		if opts.DryRun && opts.Out != nil {
			popts.Out = planWriter(opts.Out, slug, opts.JSON)
		}
		sum, err := pullOne(ctx, api, dl, slug, &s, d, popts, ro)
		if err == nil {
			err = sum.Err()
		}
		o := projectOutcome{slug: slug, err: err, started: true}
		if err != nil {
			o.code = ro.ExitCode(err)
			if ctx.Err() == nil && opts.Log != nil {
				opts.Log.Warn("the project did not complete; going on with the others", "project", slug.String(), "error", projectMessage(err))
			}
		}
		run.Projects[i] = ProjectSummary{Project: slug.String(), Summary: sum, Err: err, ExitCode: o.code, Started: true}
		outcomes = append(outcomes, o)
	}
	return run, projectsError(ctx, outcomes, len(slugs))
}

// pullOne pulls one project into dest, opened once the API has confirmed
// the project; a run refused before anything was transferred (exit 2, not
// a lock another run holds) leaves no destination it created.
func pullOne(ctx context.Context, api API, dl Downloader, slug circleci.Slug, sel *Selection, dest Destination, opts PullOptions, ro RunOptions) (*Summary, error) {
	opts.Open = dest.Open
	if ro.NewProgress != nil {
		if pr := ro.NewProgress(); pr != nil {
			opts.Progress = pr
			// Gone before the summary is printed, however the run ended.
			defer pr.Finish()
		}
	}
	sum, err := Pull(ctx, api, dl, slug, sel, nil, opts)
	if err != nil && sum.Transferred+sum.Skipped+sum.Failed == 0 &&
		ro.ExitCode(err) == 2 && !errors.As(err, new(*sink.LockedError)) {
		dest.Undo() // a refused run creates nothing
	}
	return sum, err
}

// removeEmptyDirs removes the folders between root and each project's
// folder that are left empty (by projects whose run was refused), and root
// itself if the run made it and it is empty: a run refused for every
// project creates nothing, as one over a single project does.
func removeEmptyDirs(root string, slugs []circleci.Slug, made bool) {
	for _, slug := range slugs {
		for dir := filepath.Dir(underProject(root, slug)); len(dir) > len(filepath.Clean(root)); dir = filepath.Dir(dir) {
			os.Remove(dir) // only if empty
		}
	}
	if made {
		os.Remove(root) // only if empty
	}
}

// projectDest is dest for slug in a run over several projects: DEST/<slug>
// and, when --manifest is given, LOCATION/<slug>.
func projectDest(dest Destination, slug circleci.Slug) Destination {
	dest.To = underProject(dest.To, slug)
	if dest.Manifest != "" {
		dest.Manifest = underProject(dest.Manifest, slug)
	}
	return dest
}

func underProject(loc string, slug circleci.Slug) string {
	if strings.HasPrefix(loc, "s3://") {
		return strings.TrimRight(loc, "/") + "/" + slug.String()
	}
	return filepath.Join(loc, filepath.FromSlash(slug.String()))
}

// planWriter is where a dry run over several projects prints one
// project's plan: a line naming the project before the plan's lines, or
// with asJSON the project in each line's object.
func planWriter(w io.Writer, slug circleci.Slug, asJSON bool) io.Writer {
	if !asJSON {
		fmt.Fprintf(w, "%s:\n", slug)
		return w
	}
	field, _ := json.Marshal(slug.String())
	return &projectLines{w: w, field: append(append([]byte(`{"project":`), field...), ',')}
}

// projectLines adds a "project" field to each JSON object line written
// through it.
type projectLines struct {
	w       io.Writer
	field   []byte
	partial []byte
}

func (p *projectLines) Write(b []byte) (int, error) {
	p.partial = append(p.partial, b...)
	for {
		i := bytes.IndexByte(p.partial, '\n')
		if i < 0 {
			return len(b), nil
		}
		line := p.partial[:i+1]
		if rest, ok := bytes.CutPrefix(line, []byte("{")); ok {
			line = append(slices.Clip(p.field), rest...)
		}
		if _, err := p.w.Write(line); err != nil {
			return len(b), err
		}
		p.partial = p.partial[i+1:]
	}
}
