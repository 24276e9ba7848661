// Command artifact-sync mirrors CircleCI build artifacts to a directory or S3.
//
// This file only wires flags, signals and exit codes; the work is done by the
// packages circleci (the API client), sync (the engine), sink (destinations)
// and manifest (the resumable record of transfers).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

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
	go func() {
		<-sigs
		cancel() // the run stops, records what finished and releases the lock
		// Signals within signalBurst of the first are the same request:
		// GNU timeout signals its child and then its process group, so
		// the tool gets two microseconds apart.
		burst := time.After(signalBurst)
		for {
			select {
			case <-burst:
				burst = nil
				continue
			case <-sigs:
			}
			if burst == nil {
				break
			}
		}
		// A later signal while the run winds down (a slow manifest write,
		// a lock release, multipart aborts) exits at once, as restic and
		// rclone do. The manifest is crash-safe: what it durably recorded
		// counts and the rest is fetched again.
		fmt.Fprintln(os.Stderr, "\nartifact-sync: interrupted again: stopped at once; what was recorded is kept: run the same command again to resume")
		os.Exit(exitInterrupted)
	}()
	limitMemory(os.Getenv)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	signal.Stop(sigs)
	os.Exit(code)
}

// signalBurst is how long after a first SIGINT or SIGTERM further ones
// count as the same. One sender's burst (GNU timeout signals the child,
// then its process group; a process manager that signals the group)
// arrives within microseconds, and a person who presses Ctrl-C again to
// stop at once does so after a reaction time of about 200 ms or more, so
// 150 ms tells them apart. Counting a quick second press as the first is
// safe: the run is already stopping, and one more press stops it at once.
const signalBurst = 150 * time.Millisecond

// minMemoryLimit is the least soft memory limit limitMemory sets.
const minMemoryLimit = 128 << 20

// limitMemory sets a soft memory limit (runtime/debug.SetMemoryLimit) unless
// GOMEMLIMIT sets one already, so that the heap of a large run stays near
// what is live instead of growing to twice that (GOGC=100) before each
// collection. After every collection the limit becomes memoryLimit of what
// the collection found live: never less than half as much again above it,
// so the collector never runs back to back however large the run; and never
// less than minMemoryLimit, so a run that holds little collects no more
// often than without a limit.
func limitMemory(getenv func(string) string) {
	if getenv("GOMEMLIMIT") != "" {
		return
	}
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	var adjust func(struct{})
	adjust = func(struct{}) {
		metrics.Read(live)
		debug.SetMemoryLimit(memoryLimit(live[0].Value.Uint64()))
		// Called again after the next collection, which finds the new
		// object unreachable.
		runtime.AddCleanup(&gcCycle{}, adjust, struct{}{})
	}
	adjust(struct{}{})
}

// gcCycle is an object made only to be collected. Its pointer keeps it out
// of the tiny allocator, whose objects may outlive the collection.
type gcCycle struct{ _ *byte }

// memoryLimit is the soft memory limit for a heap of live bytes.
func memoryLimit(live uint64) int64 {
	return max(minMemoryLimit, int64(min(live, math.MaxInt64/2)/2*3))
}

// usageError is a mistake in how the tool was called or configured: exit 2.
type usageError struct{ err error }

func (u *usageError) Error() string { return u.err.Error() }
func (u *usageError) Unwrap() error { return u.err }

func usagef(format string, args ...any) error { return &usageError{fmt.Errorf(format, args...)} }

// failedError says some artifacts failed: exit 1, the summary says which.
type failedError struct{ msg string }

func (f failedError) Error() string { return f.msg }

// app holds what the flags set; one per run.
type app struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	args           []string // as given, for the command that resumes a run

	token, host    string
	verbose, quiet bool
	logFormat      string
	asJSON         bool
	log            *slog.Logger
	screen         *ccsync.Screen

	sel      ccsync.Selection
	jobs     []string
	pipeNum  int64
	to       string
	layout   string
	conc     int
	manifest string
	dryRun   bool
	force    bool
	rehash   bool
	retries  int
	idle     time.Duration
	apiRetry time.Duration
	streams  int
	cutoff   string
	maxSize  string
	s3       sink.S3Config
	s3Lock   string
	download bool

	verifying bool   // verify: a destination must exist already
	madeDest  string // pull: DEST, if this run created it (undone if the run is refused)
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
	if msg := err.Error(); strings.HasPrefix(msg, "unknown command ") {
		// cobra's own message spans lines; say it in one, with its suggestion.
		first, rest, _ := strings.Cut(msg, "\n")
		first = strings.TrimSuffix(first, ` for "artifact-sync"`)
		if s := strings.Fields(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(rest), "Did you mean this?"))); len(s) > 0 {
			first += fmt.Sprintf("; did you mean %q?", s[0])
		}
		err = usagef("%s (see 'artifact-sync --help')", first)
	}
	code := exitCode(ctx, err)
	msg := oneLine(err.Error())
	var errno syscall.Errno
	switch {
	case code == exitInterrupted:
		msg = interrupted(cmd, err)
	case sink.IsPermanent(err) && errors.As(err, &errno) && cmd != nil && cmd.Name() == "pull":
		// A full, read-only or forbidden directory.
		msg += "; fix the destination, then run the same command again to resume"
	}
	fmt.Fprintln(stderr, "artifact-sync: "+ccsync.Printable(msg))
	if out.n == 0 && wantsJSON(args) {
		// Scripts that asked for JSON get an object for every outcome,
		// a usage error included.
		enc := json.NewEncoder(stdout)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(struct {
			Error    string `json:"error"`
			ExitCode int    `json:"exit_code"`
		}{msg, code})
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

// interrupted says that a run was stopped by a signal, and what else went
// wrong while it stopped, rather than "context canceled".
func interrupted(cmd *cobra.Command, err error) string {
	msg := "interrupted"
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if !errors.Is(e, context.Canceled) {
				msg += "; " + oneLine(e.Error())
			}
		}
	}
	if msg == "interrupted" && cmd != nil && cmd.Name() == "pull" {
		msg += "; what finished is recorded: run the same command again to resume"
	}
	return msg
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

func exitCode(ctx context.Context, err error) int {
	var fe failedError
	var ue *usageError
	var le *sink.LockedError
	switch {
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
		Version:           version(),
	}
	root.SetVersionTemplate("artifact-sync {{.Version}}\n")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		msg := err.Error()
		if name, ok := strings.CutPrefix(msg, "unknown flag: --"); ok {
			if other := commandWithFlag(root, name); other != "" {
				return usagef("--%s belongs to '%s', not '%s' (see '%s --help')", name, other, c.CommandPath(), c.CommandPath())
			}
			if s := nearestFlag(c, name); s != "" {
				msg += fmt.Sprintf("; did you mean --%s?", s)
			}
		}
		return usagef("%s (see '%s --help')", msg, c.CommandPath())
	})
	root.Flags().Bool("version", false, "print the version (the same as 'artifact-sync version')")
	root.SetUsageFunc(usage)
	a.globalFlags(root)
	root.AddCommand(a.listCmd(), a.pullCmd(), a.verifyCmd(), a.versionCmd())
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
	f.StringVar(&a.token, "token", "", "personal API token (default $CIRCLE_TOKEN, then $CIRCLECI_TOKEN, then $CIRCLECI_CLI_TOKEN, then token in ~/.circleci/cli.yml)")
	f.StringVar(&a.host, "host", "", "CircleCI host; requests go to <host>/api/v2 (default $CIRCLECI_HOST, then $CIRCLECI_CLI_HOST, then https://circleci.com)")
	f.BoolVarP(&a.verbose, "verbose", "v", false, "more logging on stderr")
	f.BoolVarP(&a.quiet, "quiet", "q", false, "less logging on stderr: warnings and errors only")
	f.StringVar(&a.logFormat, "log-format", "", "how log lines on stderr are written: text (short sentences) or json (default: text on a terminal, key=value otherwise)")
}

// meaningful reports whether the global flag name means something to c:
// the API's to list and pull, logging to them and verify.
func meaningful(c *cobra.Command, name string) bool {
	switch name {
	case "token", "host":
		return !c.HasParent() || c.Name() == "list" || c.Name() == "pull"
	case "verbose", "quiet", "log-format":
		return !c.HasParent() || c.Name() == "list" || c.Name() == "pull" || c.Name() == "verify"
	}
	return true
}

// flagGroups sorts a command's flags under the headings its usage line
// names; flags in none of them are the command's own options.
var flagGroups = []struct {
	title string
	names []string
}{
	{"Selection", []string{"job", "pipeline", "pipeline-number", "workflow", "branch", "pipelines"}},
	{"Filters", []string{"workflow-name", "job-name", "include", "exclude"}},
	{"", nil}, // the command's own options
	{"S3", []string{"s3-endpoint", "s3-region", "s3-path-style", "s3-lock"}},
	{"Global", []string{"token", "host", "verbose", "quiet", "log-format", "help"}},
}

// usage prints a command's help: its usage line, examples, and its flags
// grouped as the usage line names them.
func usage(c *cobra.Command) error {
	w := c.OutOrStderr()
	if c.HasAvailableSubCommands() {
		fmt.Fprintf(w, "Usage:\n  %s COMMAND [flags]\n\nCommands:\n", c.CommandPath())
		for _, sub := range c.Commands() {
			if sub.IsAvailableCommand() {
				fmt.Fprintf(w, "  %-11s %s\n", sub.Name(), sub.Short)
			}
		}
	} else {
		fmt.Fprintf(w, "Usage:\n  %s\n", c.UseLine())
	}
	if c.Example != "" {
		fmt.Fprintf(w, "\nExamples:\n%s\n", c.Example)
	}
	grouped := map[string]bool{}
	for _, g := range flagGroups {
		grouped = func() map[string]bool {
			for _, n := range g.names {
				grouped[n] = true
			}
			return grouped
		}()
	}
	for _, g := range flagGroups {
		fs := pflag.NewFlagSet(g.title, pflag.ContinueOnError)
		fs.SortFlags = false
		title := g.title
		if g.names == nil {
			title = "Flags"
			if c.HasParent() {
				title = strings.ToUpper(c.Name()[:1]) + c.Name()[1:] + " options"
			}
			inherited := c.InheritedFlags()
			c.Flags().VisitAll(func(f *pflag.Flag) { // in the order they are defined
				if !grouped[f.Name] && inherited.Lookup(f.Name) == nil {
					fs.AddFlag(f)
				}
			})
		} else {
			for _, n := range g.names {
				f := c.LocalFlags().Lookup(n)
				if f == nil {
					f = c.InheritedFlags().Lookup(n)
				}
				if f != nil && meaningful(c, n) && (c.HasParent() || n != "help") {
					fs.AddFlag(f)
				}
			}
		}
		if fs.HasFlags() {
			fmt.Fprintf(w, "\n%s:\n%s", title, fs.FlagUsages())
		}
	}
	if c.HasAvailableSubCommands() {
		fmt.Fprintf(w, "\nRun '%s COMMAND --help' for a command's flags.\n", c.CommandPath())
	}
	return nil
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
		return &usageError{err}
	}
	a.log = log
	return nil
}

func (a *app) selectionFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringSliceVar(&a.jobs, "job", nil, "job numbers N[,N...] (repeatable), whatever their status")
	f.StringVar(&a.sel.PipelineID, "pipeline", "", "every job of every workflow of the pipeline with this ID")
	f.Int64Var(&a.pipeNum, "pipeline-number", 0, "every job of every workflow of the pipeline with this number")
	f.StringArrayVar(&a.sel.Workflows, "workflow", nil, "every job of the workflow with this ID (repeatable; in a CircleCI job: \"$CIRCLE_WORKFLOW_ID\")")
	f.StringVar(&a.sel.Branch, "branch", "", "the newest pipeline on this branch")
	f.IntVar(&a.sel.Pipelines, "pipelines", 0, "with --branch (or the default branch): the newest K pipelines instead of one (default 1)")
	f.StringArrayVar(&a.sel.WorkflowNames, "workflow-name", nil, "keep jobs whose workflow name matches this glob (repeatable)")
	f.StringArrayVar(&a.sel.JobNames, "job-name", nil, "keep jobs whose name matches this glob (repeatable)")
	f.StringArrayVar(&a.sel.Include, "include", nil, "keep artifact paths matching this glob; ** crosses / (repeatable)")
	f.StringArrayVar(&a.sel.Exclude, "exclude", nil, "drop artifact paths matching this glob; ** crosses / (repeatable)")
	f.BoolVar(&a.asJSON, "json", false, "machine-readable output on stdout")
}

func (a *app) listCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list PROJECT-SLUG [selection] [filters] [--json]",
		Short: "List the artifacts of the selected jobs",
		Example: `  artifact-sync list gh/acme/widgets
  artifact-sync list gh/acme/widgets --branch main --pipelines 3 --job-name 'test*'
  artifact-sync list gh/acme/widgets --job 1234 --include '**/*.xml' --json`,
		Args: a.slugArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			slug, client, err := a.client(args[0])
			if err != nil {
				return err
			}
			api := ccsync.LimitAPI(client, 8)
			return ccsync.List(cmd.Context(), api, slug, &a.sel, ccsync.ListOptions{JSON: a.asJSON, Out: a.stdout, Log: a.log})
		},
	}
	a.selectionFlags(cmd)
	a.apiRetryFlag(cmd)
	return cmd
}

func (a *app) pullCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pull PROJECT-SLUG [selection] [filters] --to DEST [pull options]",
		Short: "Download the artifacts of the selected jobs to a directory or S3",
		Example: `  artifact-sync pull gh/acme/widgets --to ./artifacts
  artifact-sync pull gh/acme/widgets --workflow "$CIRCLE_WORKFLOW_ID" --to s3://ci-archive/widgets
  artifact-sync pull gh/acme/widgets --branch main --pipelines 5 --to s3://ci-archive/widgets --layout '{branch}/{pipeline_number}/{job_name}/{node_index}/{path}'`,
		Args: a.slugArg,
		RunE: a.pull,
	}
	a.selectionFlags(cmd)
	f := cmd.Flags()
	f.StringVar(&a.to, "to", "", "destination: a directory, or s3://bucket/prefix (required)")
	f.StringVar(&a.layout, "layout", ccsync.DefaultLayout, "where each artifact lands under DEST; placeholders {project} {branch} {pipeline_number} {pipeline_id} {workflow_name} {workflow_id} {job_name} {job_number} {node_index} {path}")
	f.IntVarP(&a.conc, "concurrency", "j", ccsync.DefaultConcurrency, "transfers at once")
	f.StringVar(&a.manifest, "manifest", "", "where the resumable manifest lives: a directory or an s3:// URL (default DEST/"+ccsync.ManifestPrefix+")")
	f.BoolVar(&a.dryRun, "dry-run", false, "print what would be transferred, transfer nothing")
	f.BoolVar(&a.force, "force", false, "transfer again even what the manifest records as done")
	f.BoolVar(&a.rehash, "verify", false, "re-hash what the manifest records at DEST and fetch again what does not match")
	f.IntVar(&a.retries, "retries", ccsync.DefaultRetries, "attempts in a row that keep nothing new before an artifact counts as failed")
	f.StringVar(&a.maxSize, "max-artifact-size", "64G", "fail, without a transfer, an artifact whose download declares more bytes, or sends more without declaring a length (K, M, G: binary units)")
	f.StringVar(&a.s3Lock, "s3-lock", "lease", "how a run keeps others off an S3 destination: lease (a lock object guarded by conditional writes) or none (no lock, for servers that do not enforce conditional writes; at your own risk)")
	f.IntVar(&a.streams, "multi-thread-streams", ccsync.DefaultMultiThreadStreams, "connections that fetch one large artifact in parallel byte ranges, into a directory (1: off)")
	f.StringVar(&a.cutoff, "multi-thread-cutoff", "64M", "artifacts of this size or more are fetched over --multi-thread-streams connections (K, M, G: binary units)")
	f.Var(newDuration(&a.idle, "60s"), "idle-timeout", "abandon and retry a transfer or API call that receives no bytes for this long")
	a.apiRetryFlag(cmd)
	a.s3Flags(cmd)
	return cmd
}

func (a *app) apiRetryFlag(cmd *cobra.Command) {
	cmd.Flags().Var(newDuration(&a.apiRetry, "2m"), "api-retry-for", "keep retrying an API call through an outage (refused or reset connections, timeouts, 502/503/504, 429), and waiting for a download host that refuses or drops every connection, for this long before giving up")
}

func (a *app) s3Flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&a.s3.Endpoint, "s3-endpoint", "", "S3 endpoint URL for S3-compatible stores (default: the AWS SDK's resolution, e.g. $AWS_ENDPOINT_URL_S3)")
	f.StringVar(&a.s3.Region, "s3-region", "", "S3 region (default: the AWS SDK's resolution, e.g. $AWS_REGION or the profile)")
	f.BoolVar(&a.s3.PathStyle, "s3-path-style", false, "address buckets as <endpoint>/<bucket> instead of <bucket>.<endpoint>")
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
		RunE: a.verify,
	}
	f := cmd.Flags()
	f.StringVar(&a.to, "to", "", "the destination to check: a directory, or s3://bucket/prefix (required)")
	f.StringVar(&a.manifest, "manifest", "", "where the manifest lives, if not in DEST/"+ccsync.ManifestPrefix)
	f.BoolVar(&a.download, "download", false, "re-read and hash every object even where its SHA-256 is stored with it (S3)")
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
			fmt.Fprintln(a.stdout, "artifact-sync", version())
		},
	}
}

// version reads the module version and VCS revision from the build info.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	return versionOf(bi)
}

// versionOf says which build bi is: the module version, the revision when the
// version does not already hold it (a pseudo-version does), and the Go
// release.
func versionOf(bi *debug.BuildInfo) string {
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" && !strings.Contains(v, rev) {
		v += " (" + rev + modified + ")"
	}
	return v + " " + bi.GoVersion
}

func (a *app) slugArg(cmd *cobra.Command, args []string) error {
	switch len(args) {
	case 0:
		return usagef("%s needs a PROJECT-SLUG such as gh/org/repo (see '%s --help')", cmd.Name(), cmd.CommandPath())
	case 1:
		return nil
	}
	return usagef("%s takes one PROJECT-SLUG, got %d arguments: %q", cmd.Name(), len(args), args)
}

// client parses the slug and the selection flags and builds the API client.
func (a *app) client(rawSlug string) (circleci.Slug, *circleci.Client, error) {
	slug, ref, err := circleci.ParseProject(rawSlug)
	if err != nil {
		return slug, nil, &usageError{err}
	}
	// A web-app URL names the selection too; a selection flag given
	// beside it is refused by Validate as a second selection.
	if ref.JobNumber > 0 {
		a.jobs = append(a.jobs, strconv.FormatInt(ref.JobNumber, 10))
	}
	if ref.WorkflowID != "" {
		a.sel.Workflows = append(a.sel.Workflows, ref.WorkflowID)
	}
	if ref.Branch != "" && a.sel.Branch == "" {
		a.sel.Branch = ref.Branch
	}
	if ref.PipelineNumber > 0 {
		if a.pipeNum != 0 && a.pipeNum != ref.PipelineNumber {
			return slug, nil, usagef("the URL names pipeline %d and --pipeline-number %d another: give one", ref.PipelineNumber, a.pipeNum)
		}
		a.pipeNum = ref.PipelineNumber
	}
	for _, s := range a.jobs {
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil || n <= 0 {
			return slug, nil, usagef("--job %q is not a job number: give positive numbers such as --job 123,124", s)
		}
		if !slices.Contains(a.sel.Jobs, n) {
			a.sel.Jobs = append(a.sel.Jobs, n)
		}
	}
	if a.pipeNum < 0 {
		return slug, nil, usagef("--pipeline-number %d: give a positive number", a.pipeNum)
	}
	a.sel.PipelineNumber = a.pipeNum
	if err := a.sel.Validate(); err != nil {
		return slug, nil, &usageError{err}
	}
	token := a.token
	for _, k := range []string{"CIRCLE_TOKEN", "CIRCLECI_TOKEN", "CIRCLECI_CLI_TOKEN"} {
		if token != "" {
			break
		}
		token = a.getenv(k)
	}
	host := a.host
	for _, k := range []string{"CIRCLECI_HOST", "CIRCLECI_CLI_HOST"} {
		if host != "" {
			break
		}
		host = a.getenv(k)
	}
	if token == "" || host == "" {
		// Like the CircleCI CLI: its config file fills what flags and
		// environment leave unset.
		path, cfgToken, cfgHost := a.cliConfig()
		if token == "" && cfgToken != "" {
			token = cfgToken
			a.log.Debug("using the token from the CircleCI CLI's config", "file", path)
		}
		if host == "" && cfgHost != "" {
			host = cfgHost
			a.log.Debug("using the host from the CircleCI CLI's config", "file", path, "host", host)
		}
	}
	if host == "" {
		host = "https://circleci.com"
	}
	// The API's own path is added to every request; a host given with it
	// (copied from the API docs) would double it.
	host = strings.TrimSuffix(strings.TrimSuffix(strings.TrimRight(host, "/"), "/api/v2"), "/api/v1.1")
	if a.apiRetry <= 0 {
		return slug, nil, usagef("--api-retry-for %s: give a positive duration such as 2m", a.apiRetry)
	}
	c, err := circleci.New(circleci.Config{
		Host: host, Token: token, UserAgent: "artifact-sync/" + version(),
		IdleTimeout: a.idle, Logger: a.log, MaxConns: max(a.conc, a.streams, 8),
		Retry: circleci.RetryPolicy{MaxElapsed: a.apiRetry},
	})
	if errors.Is(err, circleci.ErrNoToken) {
		return slug, nil, usagef("no CircleCI token: set CIRCLE_TOKEN or pass --token (create a personal API token at https://app.circleci.com/settings/user/tokens)")
	}
	if err != nil {
		return slug, nil, &usageError{err}
	}
	return slug, c, nil
}

// destination opens --to (and --manifest) as a sink and a manifest store.
func (a *app) destination(ctx context.Context) (sink.Sink, manifest.Store, error) {
	if a.to == "" {
		return nil, nil, usagef("--to is required: a directory, or s3://bucket/prefix")
	}
	dest, err := a.openSink(ctx, a.to)
	if err != nil {
		return nil, nil, err
	}
	var store manifest.Store
	switch {
	case a.manifest == "":
	case strings.HasPrefix(a.manifest, "s3://"):
		ms, err := a.openSink(ctx, a.manifest)
		if err != nil {
			return nil, nil, err
		}
		store = &ccsync.SinkStore{Sink: ms}
	default:
		if fi, err := os.Stat(a.manifest); err == nil && !fi.IsDir() {
			return nil, nil, usagef("--manifest %s is a file: give a directory (or an s3:// URL) to keep the manifest in", a.manifest)
		}
		store = manifest.DirStore{Dir: a.manifest}
	}
	return dest, store, nil
}

func (a *app) openSink(ctx context.Context, loc string) (sink.Sink, error) {
	if strings.HasPrefix(loc, "s3://") {
		cfg := a.s3
		bucket, prefix, err := sink.ParseS3URL(loc)
		if err != nil {
			return nil, &usageError{err}
		}
		cfg.Bucket, cfg.Prefix = bucket, prefix
		s, err := sink.NewS3(ctx, cfg)
		if err != nil {
			return nil, &usageError{err}
		}
		if err := s.Check(ctx); err != nil {
			return nil, &usageError{err}
		}
		return s, nil
	}
	if strings.Contains(loc, "://") {
		return nil, usagef("--to %s: give a directory or an s3://bucket/prefix URL", loc)
	}
	if _, err := os.Stat(loc); errors.Is(err, fs.ErrNotExist) {
		switch {
		case a.verifying:
			return nil, usagef("--to %s does not exist: give the directory a pull wrote to", loc)
		case a.dryRun:
			// An empty destination, which a dry run must not create.
			abs, _ := filepath.Abs(loc)
			return absentDir{sink.NewMemory(), abs}, nil
		}
	}
	_, statErr := os.Stat(loc)
	s, err := sink.NewLocal(loc)
	if err != nil {
		return nil, &usageError{err}
	}
	if errors.Is(statErr, fs.ErrNotExist) && !a.verifying {
		a.madeDest = loc
	}
	return s, nil
}

// absentDir is a destination directory that does not exist yet, for a dry
// run: empty, and named by its path.
type absentDir struct {
	*sink.Memory
	path string
}

func (d absentDir) String() string { return d.path }

func (a *app) pull(cmd *cobra.Command, args []string) error {
	ctx := cmd.Context()
	sum, err := a.runPull(ctx, args[0])
	if sum == nil {
		sum = &ccsync.Summary{Failures: []ccsync.Failure{}}
	}
	if err == nil && sum.Failed > 0 {
		err = failedError{fmt.Sprintf("%d of %d artifacts failed; run the same command again to retry them", sum.Failed, sum.Artifacts)}
	}
	if err == nil && sum.DiskErrors > 0 {
		// Everything was written again, but the disk is failing: exit 1
		// so that whoever runs this hears of it.
		msg := fmt.Sprintf("the disk at %s failed to flush (%d times)", sum.Destination, sum.DiskErrors)
		if sum.WrittenAgain > 0 {
			msg += fmt.Sprintf("; the %d artifacts it covered were written again and recorded", sum.WrittenAgain)
		}
		err = failedError{msg + "; check the disk (dmesg, free space)"}
	}
	// A run that stopped before it began (a lock held, a token rejected,
	// a layout refused) has nothing to sum up but the error; an
	// interrupted one says what is left even if nothing finished; scripts
	// (--json) get the summary whatever happened.
	began := sum.Transferred+sum.Skipped+sum.Failed > 0 || (sum.Artifacts > 0 && exitCode(ctx, err) == exitInterrupted)
	if a.asJSON || err == nil || began {
		a.report(ctx, sum, err)
	}
	return err
}

func (a *app) runPull(ctx context.Context, rawSlug string) (*ccsync.Summary, error) {
	slug, client, err := a.client(rawSlug)
	if err != nil {
		return nil, err
	}
	layout, err := ccsync.ParseLayout(a.layout)
	if err != nil {
		return nil, &usageError{err}
	}
	switch a.s3Lock {
	case "lease":
	case "none":
		a.s3.NoLock = true
		if strings.HasPrefix(a.to, "s3://") {
			a.log.Warn("--s3-lock=none: running without a lock; nothing keeps another run from writing " + a.to + " at the same time, and two runs at once can lose each other's manifest records")
		}
	default:
		return nil, usagef("--s3-lock %q: give lease or none", a.s3Lock)
	}
	if a.conc < 1 {
		return nil, usagef("--concurrency %d: give 1 or more", a.conc)
	}
	if a.retries < 1 {
		return nil, usagef("--retries %d: give 1 or more", a.retries)
	}
	if a.streams < 1 {
		return nil, usagef("--multi-thread-streams %d: give 1 or more (1 turns parallel ranges off)", a.streams)
	}
	cutoff, err := parseSize(a.cutoff)
	if err != nil {
		return nil, usagef("--multi-thread-cutoff %q: %v; give a size such as 64M", a.cutoff, err)
	}
	maxSize, err := parseSize(a.maxSize)
	if err != nil {
		return nil, usagef("--max-artifact-size %q: %v; give a size such as 64G", a.maxSize, err)
	}
	opts := ccsync.PullOptions{
		MultiThreadStreams: a.streams, MultiThreadCutoff: cutoff, MaxArtifactSize: maxSize,
		Layout: layout, Concurrency: a.conc, Retries: a.retries, DryRun: a.dryRun, Force: a.force, Verify: a.rehash,
		ToolVersion: version(), Run: manifest.NewRun(time.Now()), Log: a.log, Out: a.stdout, JSON: a.asJSON,
		// Opened once the API has confirmed the project (a rejected token
		// or an unknown project leaves a new DEST uncreated), while the
		// selection resolves.
		Open: a.destination,
	}
	if !a.dryRun && !a.quiet {
		if a.screen.IsTerminal() {
			opts.Progress = ccsync.NewBar(a.screen)
		} else {
			opts.Progress = ccsync.NewLogProgress(a.log, 5*time.Second)
		}
		// Gone before the summary is printed, however the run ended.
		defer opts.Progress.Finish()
	}
	api := ccsync.LimitAPI(client, 8)
	sum, err := ccsync.Pull(ctx, api, client, slug, &a.sel, nil, opts)
	if a.madeDest != "" && err != nil && sum.Transferred+sum.Skipped+sum.Failed == 0 &&
		exitCode(ctx, err) == exitUsage && !errors.As(err, new(*sink.LockedError)) {
		undoDest(a.madeDest)
	}
	return sum, err
}

// undoDest removes the directory dir that a refused run created (an
// unknown pipeline number, a layout refused by the plan): the tool's own
// state in it, then dir if nothing else is there, so a refused run
// creates nothing. A run held off by another's lock never gets here: dir
// may be that run's.
func undoDest(dir string) {
	os.RemoveAll(filepath.Join(dir, ".artifact-sync"))
	os.Remove(dir) // only if empty
}

// pullSummary is pull's --json summary: the run's counts, and when it did
// not succeed, why and with which exit code.
type pullSummary struct {
	*ccsync.Summary
	NotStarted int    `json:"not_started"`
	Error      string `json:"error,omitempty"`
	ExitCode   int    `json:"exit_code,omitempty"`
}

// report prints pull's summary: one JSON object with --json, otherwise a
// few lines for people (with -q only when something failed or was left).
func (a *app) report(ctx context.Context, sum *ccsync.Summary, err error) {
	ps := pullSummary{Summary: sum, NotStarted: max(0, sum.Artifacts-sum.Transferred-sum.Skipped-sum.Failed)}
	if err != nil {
		ps.Error, ps.ExitCode = oneLine(err.Error()), exitCode(ctx, err)
		if ps.ExitCode == exitInterrupted {
			ps.Error = "interrupted"
		}
	}
	if a.asJSON {
		enc := json.NewEncoder(a.stdout)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(ps)
		return
	}
	if sum.DryRun {
		fmt.Fprintf(a.stdout, "dry run: %d artifacts: %d to transfer, %d already done, %d refused\n",
			sum.Artifacts, ps.NotStarted, sum.Skipped, sum.Failed)
		return
	}
	if a.quiet && sum.Failed == 0 && ps.NotStarted == 0 {
		return
	}
	rate := float64(sum.Bytes) / max(sum.Elapsed.Seconds(), 0.001)
	line := fmt.Sprintf("%d artifacts: %d transferred (%s in %s, %s/s), %d already done, %d failed",
		sum.Artifacts, sum.Transferred, ccsync.HumanBytes(sum.Bytes), sum.Elapsed.Round(10*time.Millisecond),
		ccsync.HumanBytes(int64(rate)), sum.Skipped, sum.Failed)
	if ps.NotStarted > 0 {
		line += fmt.Sprintf(", %d not started", ps.NotStarted)
	}
	if sum.DiskErrors > 0 {
		line += fmt.Sprintf(", %d written again after the disk failed to flush", sum.WrittenAgain)
	}
	fmt.Fprintln(a.stdout, line)
	for _, f := range sum.Failures {
		if f.Path == "" {
			fmt.Fprintf(a.stdout, "  failed: job %d (%s): %s\n", f.JobNumber, ccsync.Printable(f.JobName), ccsync.Printable(f.Error))
			continue
		}
		fmt.Fprintf(a.stdout, "  failed: job %d node %d %q: %s\n", f.JobNumber, f.NodeIndex, f.Path, ccsync.Printable(f.Error))
	}
	for _, s := range sum.Passed {
		fmt.Fprintf(a.stdout, "  passed over: job %d %s (%s): %s\n", s.JobNumber, ccsync.Printable(s.JobName), ccsync.Printable(s.WorkflowName), ccsync.Printable(s.Reason))
	}
	if ps.ExitCode == exitInterrupted {
		fmt.Fprintf(a.stdout, "to resume: %s\n", ccsync.Printable(a.resumeCommand()))
	}
}

// resumeCommand is the command line that was run, to run again: the token
// given with --token is left out (it never appears in output).
func (a *app) resumeCommand() string {
	words := []string{"artifact-sync"}
	for i := 0; i < len(a.args); i++ {
		arg := a.args[i]
		switch {
		case arg == "--token":
			i++
			continue
		case strings.HasPrefix(arg, "--token="):
			continue
		}
		words = append(words, shellQuote(arg))
	}
	return strings.Join(words, " ")
}

// shellQuote quotes s for a POSIX shell when it needs quoting.
func shellQuote(s string) string {
	if s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,@%+", r))
	}) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func (a *app) verify(cmd *cobra.Command, _ []string) error {
	ctx := cmd.Context()
	a.verifying = true
	dest, store, err := a.destination(ctx)
	if err != nil {
		return err
	}
	res, err := ccsync.Verify(ctx, dest, ccsync.VerifyOptions{Manifest: store, Download: a.download, Log: a.log})
	if err == nil && res.Problems > 0 {
		err = failedError{fmt.Sprintf("verify found %d problem(s) at %s; a plain pull fetches missing and resized files again, pull --verify also those changed at the same size, unexpected ones are left alone", res.Problems, dest)}
	}
	if a.asJSON {
		out := struct {
			*ccsync.VerifyResult
			Error    string `json:"error,omitempty"`
			ExitCode int    `json:"exit_code,omitempty"`
		}{VerifyResult: res}
		if err != nil {
			out.Error, out.ExitCode = oneLine(err.Error()), exitCode(ctx, err)
		}
		enc := json.NewEncoder(a.stdout)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(out)
		return err
	}
	if res.Checked > 0 {
		fmt.Fprintf(a.stdout, "%d artifacts checked: %d intact, %d missing, %d changed, %d unexpected\n",
			res.Checked, res.Intact, len(res.Missing), len(res.Changed), len(res.Unexpected))
	}
	for _, f := range res.Failures {
		fmt.Fprintf(a.stdout, "  %s: job %d node %d %q\n", ccsync.Printable(f.Error), f.JobNumber, f.NodeIndex, f.Path)
	}
	for _, k := range res.Unexpected {
		fmt.Fprintf(a.stdout, "  unexpected: %s\n", ccsync.Printable(k))
	}
	return err
}

// nearestFlag suggests the flag of c closest to a mistyped name, if one is
// close: within two edits for long names, one for short ones, so that --foo
// suggests nothing rather than --job.
func nearestFlag(c *cobra.Command, name string) string {
	best, bestD := "", min(2, max(1, len(name)/4))+1
	c.Flags().VisitAll(func(f *pflag.Flag) {
		if d := editDistance(name, f.Name); d < bestD {
			best, bestD = f.Name, d
		}
	})
	return best
}

// commandWithFlag names the command (other than the one that failed) that
// has a flag called name, for "--to belongs to pull".
func commandWithFlag(root *cobra.Command, name string) string {
	for _, c := range root.Commands() {
		if c.Flags().Lookup(name) != nil {
			return c.CommandPath()
		}
	}
	return ""
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// cliConfig reads token and host from the CircleCI CLI's config file
// (~/.circleci/cli.yml), a flat YAML map; it returns empty strings when the
// file is missing or has no token.
func (a *app) cliConfig() (path, token, host string) {
	home := a.getenv("HOME")
	if home == "" {
		return "", "", ""
	}
	path = filepath.Join(home, ".circleci", "cli.yml")
	data, err := os.ReadFile(path)
	if err != nil {
		return path, "", ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t") {
			continue // nested keys belong to other settings
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		if i := strings.Index(v, " #"); i >= 0 {
			v = strings.TrimSpace(v[:i])
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		switch strings.TrimSpace(k) {
		case "token":
			token = v
		case "host":
			host = v
		}
	}
	return path, token, host
}

// duration is a time.Duration flag shown as it was typed ("60s", not
// "1m0s").
type duration struct {
	d    *time.Duration
	text string
}

func newDuration(d *time.Duration, def string) *duration {
	v := &duration{d: d}
	if err := v.Set(def); err != nil {
		panic(err)
	}
	return v
}

func (v *duration) String() string { return v.text }
func (v *duration) Type() string   { return "duration" }

func (v *duration) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return fmt.Errorf("give a duration such as 60s or 5m")
	}
	*v.d, v.text = d, s
	return nil
}

// parseSize reads a byte count with an optional binary suffix: 512, 64K, 64M, 1G.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	t := strings.ToUpper(strings.TrimSuffix(strings.TrimSuffix(strings.TrimSpace(s), "B"), "i"))
	if t != "" {
		switch t[len(t)-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		}
		if mult > 1 {
			t = t[:len(t)-1]
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 || n > math.MaxInt64/mult {
		return 0, errors.New("not a positive size that fits in 63 bits")
	}
	return n * mult, nil
}
