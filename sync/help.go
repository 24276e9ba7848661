package sync

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

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
	{"Selection", []string{"job", "pipeline", "pipeline-number", "workflow", "branch", "pipelines", "since"}},
	{"Filters", []string{"workflow-name", "job-name", "include", "exclude"}},
	{"Projects", []string{"projects-from", "org", "shard"}},
	{"", nil}, // the command's own options
	{"S3", []string{"s3-endpoint", "s3-region", "s3-path-style", "s3-lock"}},
	{"Global", []string{"token", "host", "verbose", "quiet", "log-format", "help"}},
}

// Usage prints a command's help: its usage line, examples, and its flags
// grouped as the usage line names them.
func Usage(c *cobra.Command) error {
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

// FlagError is the command line's answer to a flag it cannot parse on c:
// one line that names the fix, the command that has the flag when it is
// another's ("--to belongs to pull"), or the nearest flag when it is
// mistyped. A UsageError.
func FlagError(c *cobra.Command, err error) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "unknown flag: --"); ok {
		if other := commandWithFlag(c.Root(), name); other != "" && other != c.CommandPath() {
			return Usagef("--%s belongs to '%s', not '%s' (see '%s --help')", name, other, c.CommandPath(), c.CommandPath())
		}
		var names []string
		c.Flags().VisitAll(func(f *pflag.Flag) { names = append(names, f.Name) })
		if s := Nearest(name, names); s != "" {
			msg += fmt.Sprintf("; did you mean --%s?", s)
		}
	}
	return Usagef("%s (see '%s --help')", msg, c.CommandPath())
}

// commandWithFlag names the command under root that has a flag called
// name.
func commandWithFlag(root *cobra.Command, name string) string {
	for _, c := range root.Commands() {
		if c.Flags().Lookup(name) != nil {
			return c.CommandPath()
		}
	}
	return ""
}

// CommandError says cobra's "unknown command" error, which spans lines, in
// one line with its suggestion, as a UsageError; other errors it returns
// as they are.
func CommandError(err error) error {
	msg := err.Error()
	if !strings.HasPrefix(msg, "unknown command ") {
		return err
	}
	first, rest, _ := strings.Cut(msg, "\n")
	first = strings.TrimSuffix(first, ` for "artifact-sync"`)
	if s := strings.Fields(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(rest), "Did you mean this?"))); len(s) > 0 {
		first += fmt.Sprintf("; did you mean %q?", s[0])
	}
	return Usagef("%s (see 'artifact-sync --help')", first)
}
