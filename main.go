// Command artifact-sync mirrors CircleCI build artifacts to a directory or S3.
//
// This file only wires flags, signals and exit codes; the work is done by the
// packages circleci (the API client), sync (the engine), sink (destinations)
// and manifest (the resumable record of transfers).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/artifact-sync/artifact-sync/circleci"
	"github.com/artifact-sync/artifact-sync/manifest"
	"github.com/artifact-sync/artifact-sync/sink"
	ccsync "github.com/artifact-sync/artifact-sync/sync"
)

// Exit codes, as cli.md fixes them.
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitInterrupted = 130
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go ccsync.OnInterrupt(sigs, cancel, func() {
		// A later signal while the run winds down (a slow manifest write,
		// a lock release, multipart aborts) exits at once, as restic and
		// rclone do. The manifest is crash-safe: what it durably recorded
		// counts and the rest is fetched again.
		fmt.Fprintln(os.Stderr, "\nartifact-sync: interrupted again: stopped at once; what was recorded is kept: run the same command again to resume")
		os.Exit(exitInterrupted)
	})
	ccsync.LimitMemory(os.Getenv)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	signal.Stop(sigs)
	os.Exit(code)
}

// usagef is a mistake in how the tool was called: exit 2.
func usagef(format string, args ...any) error { return ccsync.Usagef(format, args...) }

// app holds what the flags set, bound to the options of the packages that
// do the work; one per run.
type app struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	args           []string // as given, for the command that resumes a run

	api            circleci.Config // Token, Host, IdleTimeout, Retry.MaxElapsed
	apiVersion     string          // --api: auto, v2 or v3
	verbose, quiet bool
	logFormat      string
	asJSON         bool
	log            *slog.Logger
	screen         *ccsync.Screen

	sel        ccsync.Selection
	projects   ccsync.Projects
	jobs       []string
	pipeNum    int64
	dest       ccsync.Destination
	pullOpts   ccsync.PullOptions
	layout     string
	s3Lock     string
	verifyOpts ccsync.VerifyOptions
	follow     ccsync.Follow
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	out := &countingWriter{w: stdout}
	stdout = out
	a := &app{stdout: stdout, stderr: stderr, getenv: getenv, args: args}
	root := a.commands()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	err = ccsync.CommandError(err)
	code := exitCode(ctx, err)
	msg := ccsync.OneLine(err.Error())
	var errno syscall.Errno
	switch {
	case code == exitInterrupted:
		msg = ccsync.Interrupted(err, cmd != nil && cmd.Name() == "pull")
	case sink.IsPermanent(err) && errors.As(err, &errno) && cmd != nil && cmd.Name() == "pull":
		// A full, read-only or forbidden directory; a sink.FSError says
		// what fixes it.
		if errors.As(err, new(*sink.FSError)) {
			msg += "; once fixed, run the same command again to resume"
		} else {
			msg += "; fix the destination, then run the same command again to resume"
		}
	}
	fmt.Fprintln(stderr, "artifact-sync: "+ccsync.Printable(msg))
	if out.n == 0 && wantsJSON(args) {
		// Scripts that asked for JSON get an object for every outcome,
		// a usage error included.
		ccsync.ReportError(stdout, msg, code)
	}
	return code
}

// wantsJSON reports whether --json is among args (before a "--"), whether
// or not the command line parsed.
func wantsJSON(args []string) bool {
	for _, arg := range args {
		switch arg {
		case "--":
			return false
		case "--json", "--json=true":
			return true
		}
	}
	return false
}

// countingWriter counts what is written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func exitCode(ctx context.Context, err error) int {
	var fe *ccsync.FailedError
	var ue *ccsync.UsageError
	var le *sink.LockedError
	var pe *ccsync.ProjectsError
	switch {
	case errors.As(err, &pe):
		return pe.Code // the worst of the projects'
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		return exitInterrupted
	case errors.As(err, &fe):
		return exitFailed
	case errors.As(err, new(*sink.LostLockError)):
		// Not a mistake of the user's: another run took over, and a rerun
		// resumes once it is done.
		return exitFailed
	case errors.As(err, &ue), errors.As(err, &le),
		errors.Is(err, circleci.ErrNoToken), errors.Is(err, circleci.ErrUnauthorized),
		errors.Is(err, circleci.ErrForbidden), errors.Is(err, circleci.ErrNotFound), isBadRequest(err),
		errors.Is(err, ccsync.ErrCollision), errors.Is(err, ccsync.ErrNoManifest), errors.Is(err, ccsync.ErrOtherProject),
		errors.Is(err, manifest.ErrCorrupt),
		errors.Is(err, manifest.ErrVersion), errors.Is(err, manifest.ErrDestination),
		// An unusable destination, whether found at the start (read-only,
		// a missing bucket) or mid-run (a full disk): the run cannot go on
		// and a rerun fails alike until someone fixes it.
		sink.IsPermanent(err):
		return exitUsage
	}
	if ctx.Err() != nil {
		return exitInterrupted
	}
	return exitFailed
}

// isBadRequest reports a 400 from the API: it refused what the user gave.
func isBadRequest(err error) bool {
	var ce *circleci.Error
	return errors.As(err, &ce) && ce.StatusCode == http.StatusBadRequest
}

func (a *app) commands() *cobra.Command {
	root := &cobra.Command{
		Use:   "artifact-sync",
		Short: "Mirror CircleCI build artifacts to a directory or S3",
		Long: `artifact-sync lists the artifacts of CircleCI jobs (chosen by job number, pipeline,
workflow or branch), downloads them concurrently and writes them to a directory
or to s3://bucket/prefix, recording every transfer in a manifest so that an
interrupted or repeated run resumes instead of starting over.`,
		Example: `  artifact-sync list gh/acme/widgets --branch main
  artifact-sync pull gh/acme/widgets --workflow "$CIRCLE_WORKFLOW_ID" --to s3://backups/widgets
  artifact-sync verify --to ./artifacts`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		PersistentPreRunE: a.setup,
		Version:           ccsync.Version(),
	}
	root.SetVersionTemplate("artifact-sync {{.Version}}\n")
	root.SetFlagErrorFunc(ccsync.FlagError)
	root.Flags().Bool("version", false, "print the version (the same as 'artifact-sync version')")
	root.SetUsageFunc(ccsync.Usage)
	a.globalFlags(root)
	root.AddCommand(a.listCmd(), a.pullCmd(), a.verifyCmd(), a.versionCmd(), manCmd())
	for _, c := range root.Commands() {
		c.DisableFlagsInUseLine = true // the Use lines name their flags
		c.Flags().SortFlags = false
	}
	return root
}

// globalFlags may come before or after the command (artifact-sync -q pull
// ...); each command's help lists only those that mean something to it.
func (a *app) globalFlags(root *cobra.Command) {
	f := root.PersistentFlags()
	f.StringVar(&a.api.Token, "token", "", "personal API token (default $CIRCLE_TOKEN, then $CIRCLECI_TOKEN, then $CIRCLECI_CLI_TOKEN, then token in ~/.circleci/cli.yml)")
	f.StringVar(&a.api.Host, "host", "", "CircleCI host; requests go to <host>/api/v2 (default $CIRCLECI_HOST, then $CIRCLECI_CLI_HOST, then https://circleci.com)")
	f.BoolVarP(&a.verbose, "verbose", "v", false, "more logging on stderr")
	f.BoolVarP(&a.quiet, "quiet", "q", false, "less logging on stderr: warnings and errors only")
	f.StringVar(&a.logFormat, "log-format", "", "how log lines on stderr are written: text (short sentences) or json (default: text on a terminal, key=value otherwise)")
}

func (a *app) setup(cmd *cobra.Command, _ []string) error {
	level := slog.LevelInfo
	switch {
	case a.verbose && a.quiet:
		return usagef("give either --verbose or --quiet, not both")
	case a.verbose:
		level = slog.LevelDebug
	case a.quiet:
		level = slog.LevelWarn
	}
	if f := cmd.Flags().Lookup("pipelines"); f != nil && f.Changed && a.sel.Pipelines < 1 {
		return usagef("--pipelines %d: give how many of the newest pipelines to take, 1 or more", a.sel.Pipelines)
	}
	a.screen = ccsync.NewScreen(a.stderr, ccsync.UseColor(a.stderr, a.getenv))
	log, err := ccsync.NewLogger(a.screen, a.logFormat, level)
	if err != nil {
		return &ccsync.UsageError{Err: err}
	}
	a.log = log
	a.dest.S3.Logger = log // the AWS SDK's own lines, at debug level
	return nil
}

func (a *app) selectionFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringSliceVar(&a.jobs, "job", nil, "job numbers or job IDs N[,N...] (repeatable), whatever their status; in a CircleCI job: \"$CIRCLE_WORKFLOW_JOB_ID\"")
	f.StringVar(&a.sel.PipelineID, "pipeline", "", "every job of every workflow of the pipeline with this ID")
	f.Int64Var(&a.pipeNum, "pipeline-number", 0, "every job of every workflow of the pipeline with this number")
	f.StringArrayVar(&a.sel.Workflows, "workflow", nil, "every job of the workflow with this ID (repeatable; in a CircleCI job: \"$CIRCLE_WORKFLOW_ID\")")
	f.StringVar(&a.sel.Branch, "branch", "", "the newest pipeline on this branch")
	f.IntVar(&a.sel.Pipelines, "pipelines", 0, "with --branch (or the default branch): the newest K pipelines instead of one (default 1)")
	f.Var(ccsync.NewSince(&a.sel.Since, time.Now), "since", "every pipeline created since then, on every branch or on --branch: 30d, 36h, 90m, a date (2026-11-01, midnight UTC) or an RFC 3339 time")
	f.StringArrayVar(&a.sel.WorkflowNames, "workflow-name", nil, "keep jobs whose workflow name matches this glob (repeatable)")
	f.StringArrayVar(&a.sel.JobNames, "job-name", nil, "keep jobs whose name matches this glob (repeatable)")
	f.StringArrayVar(&a.sel.Include, "include", nil, "keep artifact paths matching this glob; ** crosses / (repeatable)")
	f.StringArrayVar(&a.sel.Exclude, "exclude", nil, "drop artifact paths matching this glob; ** crosses / (repeatable)")
	f.BoolVar(&a.asJSON, "json", false, "machine-readable output on stdout")
	ccsync.ProjectFlags(f, &a.projects)
}

func (a *app) listCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list PROJECT-SLUG... [selection] [filters] [projects] [--json]",
		Short: "List the artifacts of the selected jobs",
		Example: `  artifact-sync list gh/acme/widgets
  artifact-sync list gh/acme/widgets --branch main --pipelines 3 --job-name 'test*'
  artifact-sync list gh/acme/widgets --job 1234 --include '**/*.xml' --json
  artifact-sync list --org gh/acme --branch main --json`,
		Args: a.projects.CheckArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			client, err := a.client(args)
			if err != nil {
				return err
			}
			api, report := ccsync.ChooseAPI(ccsync.LimitAPI(client, 8), a.apiVersion, a.log)
			defer report()
			a.projects.Since = a.sel.Since // --org finds the projects built in the window
			opts := ccsync.ListOptions{JSON: a.asJSON, Out: a.stdout, Log: a.log}
			return ccsync.ListProjects(cmd.Context(), api, client, &a.projects, &a.sel, opts, a.exitCode(cmd.Context()))
		},
	}
	a.selectionFlags(cmd)
	a.apiRetryFlag(cmd)
	return cmd
}

func (a *app) pullCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pull PROJECT-SLUG... [selection] [filters] [projects] --to DEST [pull options]",
		Short: "Download the artifacts of the selected jobs to a directory or S3",
		Example: `  artifact-sync pull gh/acme/widgets --to ./artifacts
  artifact-sync pull gh/acme/widgets --workflow "$CIRCLE_WORKFLOW_ID" --to s3://ci-archive/widgets
  artifact-sync pull gh/acme/widgets --branch main --pipelines 5 --to s3://ci-archive/widgets --layout '{branch}/{pipeline_number}/{job_name}/{node_index}/{path}'
  artifact-sync pull --org gh/acme --shard "$CIRCLE_NODE_INDEX/$CIRCLE_NODE_TOTAL" --to s3://ci-archive`,
		Args: a.projects.CheckArgs,
		RunE: a.runPull,
	}
	a.selectionFlags(cmd)
	f := cmd.Flags()
	f.StringVar(&a.dest.To, "to", "", "destination: a directory, or s3://bucket/prefix (required)")
	f.StringVar(&a.layout, "layout", ccsync.DefaultLayout, "where each artifact lands under DEST; placeholders {project} {branch} {pipeline_number} {pipeline_id} {workflow_name} {workflow_id} {job_name} {job_number} {node_index} {path}")
	f.VarP(ccsync.NewCount(&a.pullOpts.Concurrency, ccsync.DefaultConcurrency), "concurrency", "j", "transfers at once")
	f.StringVar(&a.dest.Manifest, "manifest", "", "where the resumable manifest lives: a directory or an s3:// URL (default DEST/"+ccsync.ManifestPrefix+")")
	f.BoolVar(&a.pullOpts.DryRun, "dry-run", false, "print what would be transferred, transfer nothing")
	f.BoolVar(&a.pullOpts.Force, "force", false, "transfer again even what the manifest records as done")
	f.BoolVar(&a.pullOpts.Verify, "verify", false, "re-hash what the manifest records at DEST and fetch again what does not match")
	f.Var(ccsync.NewCount(&a.pullOpts.Retries, ccsync.DefaultRetries), "retries", "attempts in a row that keep nothing new before an artifact counts as failed")
	f.Var(ccsync.NewSize(&a.pullOpts.MaxArtifactSize, "64G"), "max-artifact-size", "fail, without a transfer, an artifact whose download declares more bytes, or sends more without declaring a length (K, M, G: binary units)")
	f.Var(ccsync.NewChoice(&a.s3Lock, "lease", "none"), "s3-lock", "how a run keeps others off an S3 destination: lease (a lock object guarded by conditional writes) or none (no lock, for servers that do not enforce conditional writes; at your own risk)")
	f.Var(ccsync.NewCount(&a.pullOpts.MultiThreadStreams, ccsync.DefaultMultiThreadStreams), "multi-thread-streams", "connections that fetch one large artifact in parallel byte ranges, into a directory (1: off)")
	f.Var(ccsync.NewSize(&a.pullOpts.MultiThreadCutoff, "64M"), "multi-thread-cutoff", "artifacts of this size or more are fetched over --multi-thread-streams connections (K, M, G: binary units)")
	f.Var(ccsync.NewDuration(&a.api.IdleTimeout, "60s"), "idle-timeout", "abandon and retry a transfer or API call that receives no bytes for this long")
	ccsync.FollowFlags(f, &a.follow)
	a.apiRetryFlag(cmd)
	a.s3Flags(cmd)
	return cmd
}

func (a *app) apiRetryFlag(cmd *cobra.Command) {
	cmd.Flags().Var(ccsync.NewChoice(&a.apiVersion, ccsync.APIAuto, ccsync.APIV2, ccsync.APIV3), "api", "which CircleCI API lists artifacts: auto (v2, moving to v3 if v2's listing is retired), v2 (by job number; CircleCI Server) or v3 (by job ID)")
	cmd.Flags().Var(ccsync.NewDuration(&a.api.Retry.MaxElapsed, "2m"), "api-retry-for", "keep retrying an API call through an outage (refused or reset connections, timeouts, 502/503/504, 429), and waiting for a download host that refuses or drops every connection, for this long before giving up")
}

func (a *app) s3Flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&a.dest.S3.Endpoint, "s3-endpoint", "", "S3 endpoint URL for S3-compatible stores (default: the AWS SDK's resolution, e.g. $AWS_ENDPOINT_URL_S3)")
	f.StringVar(&a.dest.S3.Region, "s3-region", "", "S3 region (default: the AWS SDK's resolution, e.g. $AWS_REGION or the profile)")
	f.BoolVar(&a.dest.S3.PathStyle, "s3-path-style", false, "address buckets as <endpoint>/<bucket> instead of <bucket>.<endpoint>")
}

func (a *app) verifyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "verify --to DEST [--manifest LOCATION] [--json]",
		Short: "Check that everything the manifest records is intact at the destination",
		Example: `  artifact-sync verify --to ./artifacts
  artifact-sync verify --to s3://ci-archive/widgets --download --json`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("verify takes no arguments, got %q: give the destination with --to", args[0])
			}
			return nil
		},
		RunE: a.runVerify,
	}
	f := cmd.Flags()
	f.StringVar(&a.dest.To, "to", "", "the destination to check: a directory, or s3://bucket/prefix (required)")
	f.StringVar(&a.dest.Manifest, "manifest", "", "where the manifest lives, if not in DEST/"+ccsync.ManifestPrefix)
	f.BoolVar(&a.verifyOpts.Download, "download", false, "re-read and hash every object even where its SHA-256 is stored with it (S3)")
	f.BoolVar(&a.asJSON, "json", false, "one JSON summary object on stdout")
	a.s3Flags(cmd)
	return cmd
}

func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version and the revision it was built from",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(a.stdout, "artifact-sync", ccsync.Version())
		},
	}
}

// manCmd writes the man pages the release archives ship (.ci/release);
// hidden, as it is no user's business.
func manCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "__man DIR",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return ccsync.WriteManPages(cmd.Root(), args[0])
		},
	}
}

// client reads the projects and the selection flags, and builds the API
// client from the flags, the environment and the CircleCI CLI's config.
func (a *app) client(args []string) (*circleci.Client, error) {
	if err := a.projects.Parse(args, &a.sel, a.jobs, a.pipeNum); err != nil {
		return nil, err
	}
	if a.api.Retry.MaxElapsed <= 0 {
		return nil, usagef("--api-retry-for %s: give a positive duration such as 2m", a.api.Retry.MaxElapsed)
	}
	cfg := a.api
	cfg.UserAgent, cfg.Logger = "artifact-sync/"+ccsync.Version(), a.log
	cfg.MaxConns = max(a.pullOpts.Concurrency, a.pullOpts.MultiThreadStreams, 8)
	cfg.Complete(a.getenv)
	c, err := circleci.New(cfg)
	if errors.Is(err, circleci.ErrNoToken) {
		return nil, usagef("no CircleCI token: set CIRCLE_TOKEN or pass --token (create a personal API token at https://app.circleci.com/settings/user/tokens)")
	}
	if err != nil {
		return nil, &ccsync.UsageError{Err: err}
	}
	return c, nil
}

func (a *app) runPull(cmd *cobra.Command, args []string) error {
	ctx := cmd.Context()
	run, err := a.pull(ctx, args)
	// A run that stopped before it began (a lock held, a token rejected,
	// a layout refused) has nothing to sum up but the error; an
	// interrupted one says what is left even if nothing finished; scripts
	// (--json) get the summary whatever happened.
	run.Report(a.stdout, a.outcome(ctx, err), a.asJSON, a.quiet)
	return err
}

func (a *app) pull(ctx context.Context, args []string) (*ccsync.Run, error) {
	client, err := a.client(args)
	if err != nil {
		return nil, err
	}
	opts := a.pullOpts
	if opts.Layout, err = ccsync.ParseLayout(a.layout); err != nil {
		return nil, &ccsync.UsageError{Err: err}
	}
	if a.s3Lock == "none" {
		a.dest.S3.NoLock = true
		if strings.HasPrefix(a.dest.To, "s3://") {
			a.log.Warn("--s3-lock=none: running without a lock; nothing keeps another run from writing " + a.dest.To + " at the same time, and two runs at once can lose each other's manifest records")
		}
	}
	opts.ToolVersion, opts.Run = ccsync.Version(), manifest.NewRun(time.Now())
	opts.Log, opts.Out, opts.JSON = a.log, a.stdout, a.asJSON
	// Each project's destination is opened once the API has confirmed
	// the project (a rejected token or an unknown project leaves a new
	// DEST uncreated), while the selection resolves.
	a.dest.DryRun = opts.DryRun
	ro := ccsync.RunOptions{ExitCode: a.exitCode(ctx), NewProgress: func() ccsync.Progress {
		switch {
		case opts.DryRun || a.quiet:
			return nil
		case a.screen.IsTerminal():
			return ccsync.NewBar(a.screen)
		}
		return ccsync.NewLogProgress(a.log, 5*time.Second)
	}}
	ro.Follow, ro.Follow.Self = a.follow, a.getenv("CIRCLE_WORKFLOW_JOB_ID")
	api, report := ccsync.ChooseAPI(ccsync.LimitAPI(client, 8), a.apiVersion, a.log)
	defer report()
	a.projects.Since = a.sel.Since // --org finds the projects built in the window
	return ccsync.PullProjects(ctx, api, client, client, &a.projects, &a.sel, a.dest, opts, ro)
}

// exitCode is the command line's exit code for an error of a run in ctx.
func (a *app) exitCode(ctx context.Context) func(error) int {
	return func(err error) int { return exitCode(ctx, err) }
}

func (a *app) runVerify(cmd *cobra.Command, _ []string) error {
	ctx := cmd.Context()
	a.dest.MustExist = true
	dest, store, err := a.dest.Open(ctx)
	if err != nil {
		return err
	}
	a.verifyOpts.Manifest, a.verifyOpts.Log = store, a.log
	res, err := ccsync.Verify(ctx, dest, a.verifyOpts)
	if err == nil {
		err = res.Err()
	}
	res.Report(a.stdout, a.outcome(ctx, err), a.asJSON)
	return err
}

// outcome is how a command ended, for its report.
func (a *app) outcome(ctx context.Context, err error) ccsync.Outcome {
	code := exitCode(ctx, err)
	return ccsync.Outcome{Err: err, ExitCode: code, Interrupted: err != nil && code == exitInterrupted, Args: a.args}
}
