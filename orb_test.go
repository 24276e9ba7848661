package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"

	ccsync "github.com/artifact-sync/artifact-sync/sync"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

// orbSource is the orb's source, in the layout of CircleCI's orb template;
// `circleci orb pack .ci/orb/src` packs it for publishing.
const orbSource = ".ci/orb/src"

// orbName is the name the README and the examples import the orb as.
const orbName = "artifact-sync"

// orbSections are the folders of an orb's source that pack into the map of
// the same name, one entry per file.
var orbSections = []string{"commands", "jobs", "executors", "examples"}

// includeRef is a value that `circleci orb pack` replaces by a file's text.
var includeRef = regexp.MustCompile(`^<<\s*include\(([^)]+)\)\s*>>$`)

// parameterRef is a reference to a parameter in orb source.
var parameterRef = regexp.MustCompile(`<<\s*parameters\.([A-Za-z0-9_-]+)\s*>>`)

// readOrbFile decodes one YAML file of the orb's source, with its
// <<include(...)>> values replaced by the named files' text, as
// `circleci orb pack` does.
func readOrbFile(t *testing.T, path string) any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return walkStrings(v, func(s string) any {
		m := includeRef.FindStringSubmatch(s)
		if m == nil {
			return s
		}
		text, err := os.ReadFile(filepath.Join(orbSource, m[1]))
		if err != nil {
			t.Fatalf("%s includes %s: %v", path, m[1], err)
		}
		return string(text)
	})
}

// walkStrings returns v with every string value (not map keys) replaced by
// f's result.
func walkStrings(v any, f func(string) any) any {
	switch v := v.(type) {
	case string:
		return f(v)
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = walkStrings(e, f)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = walkStrings(e, f)
		}
		return out
	}
	return v
}

// packOrb packs the orb's source into one orb, as `circleci orb pack` does:
// @orb.yml is the root, and each file SECTION/NAME.yml becomes SECTION.NAME.
func packOrb(t *testing.T) map[string]any {
	t.Helper()
	orb, ok := readOrbFile(t, filepath.Join(orbSource, "@orb.yml")).(map[string]any)
	if !ok {
		t.Fatal("@orb.yml is not a map")
	}
	for _, section := range orbSections {
		files, err := filepath.Glob(filepath.Join(orbSource, section, "*.yml"))
		if err != nil {
			t.Fatal(err)
		}
		if len(files) == 0 {
			continue
		}
		entries := map[string]any{}
		for _, f := range files {
			entries[strings.TrimSuffix(filepath.Base(f), ".yml")] = readOrbFile(t, f)
		}
		orb[section] = entries
	}
	return orb
}

// withDefaults is one definition of a command, job or executor as CircleCI
// expands it when invoked with its defaults: each <<parameters.NAME>> is
// replaced by NAME's default (a value of its own type where it is the whole
// value, such as an enum for a step's when), and a required parameter by a
// string. The schema describes expanded config: an unexpanded reference such
// as resource_class: <<parameters.resource-class>> matches none of its enums.
func withDefaults(def any) any {
	params, _ := at(def, "parameters").(map[string]any)
	value := func(name string) any {
		if p, ok := params[name].(map[string]any); ok {
			if d, has := p["default"]; has {
				return d
			}
		}
		return "required-" + name
	}
	return walkStrings(def, func(s string) any {
		if m := parameterRef.FindStringSubmatch(s); m != nil && m[0] == s {
			return value(m[1])
		}
		return parameterRef.ReplaceAllStringFunc(s, func(ref string) string {
			return fmt.Sprint(value(parameterRef.FindStringSubmatch(ref)[1]))
		})
	})
}

// orbPieceProblems validates one command, job, executor or example of the
// orb against CircleCI's schema, as an entry of a config that has only it;
// an example's usage is validated as the config it is.
func orbPieceProblems(schema *jsonschema.Schema, section, name string, def any) []string {
	var docs []any
	switch section {
	case "examples":
		docs = append(docs, map[string]any{"version": 2.1, section: map[string]any{name: def}}, at(def, "usage"))
	default:
		docs = append(docs, map[string]any{"version": 2.1, section: map[string]any{name: withDefaults(def)}})
	}
	var problems []string
	for _, doc := range docs {
		if err := schema.Validate(jsonValue(doc)); err != nil {
			problems = append(problems, err.Error())
		}
	}
	return problems
}

// jsonValue converts decoded YAML to the values the schema library
// validates (json.Number numbers).
func jsonValue(v any) any {
	data, err := yaml.Marshal(v)
	if err != nil {
		return err.Error()
	}
	out, err := yamlValue(string(data))
	if err != nil {
		return err.Error()
	}
	return out
}

// packedOrbProblems validates the whole packed orb, each definition
// expanded with its defaults, and each example's usage.
func packedOrbProblems(schema *jsonschema.Schema, orb map[string]any) []string {
	expanded := maps.Clone(orb)
	for _, section := range []string{"commands", "jobs", "executors"} {
		defs, _ := orb[section].(map[string]any)
		out := map[string]any{}
		for name, def := range defs {
			out[name] = withDefaults(def)
		}
		expanded[section] = out
	}
	var problems []string
	if err := schema.Validate(jsonValue(expanded)); err != nil {
		problems = append(problems, err.Error())
	}
	examples, _ := orb["examples"].(map[string]any)
	for name, ex := range examples {
		if err := schema.Validate(jsonValue(at(ex, "usage"))); err != nil {
			problems = append(problems, "example "+name+": "+err.Error())
		}
	}
	return append(problems, orbUsesProblems(orb, orb, true)...)
}

// invocationKeys are the keys a workflow gives any job, besides the job's
// parameters.
var invocationKeys = []string{"requires", "context", "name", "filters", "matrix", "type", "pre-steps", "post-steps", "serial-group", "override-with"}

// orbUsesProblems checks what CircleCI checks when it expands a config
// using the orb and the schema cannot: that every artifact-sync/NAME (or,
// inside the orb, NAME) the config invokes exists, gets only parameters it
// declares, gets every required one, and an enum parameter one of its
// values. A misspelt parameter such as "too:" fails here.
func orbUsesProblems(config any, orb map[string]any, inside bool) []string {
	var problems []string
	var check func(section, ref string, args any)
	check = func(section, ref string, args any) {
		name, ok := strings.CutPrefix(ref, orbName+"/")
		if !ok && !inside {
			return
		}
		def, found := at(orb, section, name).(map[string]any)
		if !found {
			if inside && section == "executors" {
				return // an executor parameter's value, such as <<parameters.executor>>
			}
			problems = append(problems, fmt.Sprintf("the orb has no %s %q", strings.TrimSuffix(section, "s"), name))
			return
		}
		params, _ := def["parameters"].(map[string]any)
		given, _ := args.(map[string]any)
		for k, v := range given {
			p, declared := params[k]
			switch {
			case !declared && section == "jobs" && slices.Contains(invocationKeys, k):
			case !declared && section == "executors" && k == "name":
			case !declared:
				problems = append(problems, fmt.Sprintf("%s %s has no parameter %q", strings.TrimSuffix(section, "s"), ref, k))
			case at(p, "type") == "executor":
				switch e := v.(type) {
				case string:
					if !parameterRef.MatchString(e) {
						check("executors", e, nil)
					}
				case map[string]any:
					name, _ := e["name"].(string)
					check("executors", name, e)
				}
			case at(p, "type") == "enum" && !parameterRef.MatchString(fmt.Sprint(v)):
				if enum, _ := at(p, "enum").([]any); !slices.Contains(enum, any(fmt.Sprint(v))) {
					problems = append(problems, fmt.Sprintf("%s %s: %s is %v, not one of %v", strings.TrimSuffix(section, "s"), ref, k, v, at(p, "enum")))
				}
			}
		}
		for k, p := range params {
			if decl, _ := p.(map[string]any); decl != nil && decl["default"] == nil {
				if _, ok := given[k]; !ok {
					problems = append(problems, fmt.Sprintf("%s %s lacks its required parameter %q", strings.TrimSuffix(section, "s"), ref, k))
				}
			}
		}
	}
	var steps func(list any)
	steps = func(list any) {
		ss, _ := list.([]any)
		for _, s := range ss {
			switch s := s.(type) {
			case string:
				if strings.HasPrefix(s, orbName+"/") {
					check("commands", s, nil)
				}
			case map[string]any:
				for ref, args := range s {
					if ref == "when" || ref == "unless" {
						steps(at(args, "steps")) // the steps of a condition are invocations too
					} else if _, builtin := builtinSteps[ref]; !builtin {
						check("commands", ref, args)
					}
				}
			}
		}
	}
	jobs, _ := at(config, "jobs").(map[string]any)
	for _, job := range jobs {
		steps(at(job, "steps"))
		switch e := at(job, "executor").(type) {
		case string:
			check("executors", e, nil)
		case map[string]any:
			name, _ := e["name"].(string)
			check("executors", name, e)
		}
	}
	commands, _ := at(config, "commands").(map[string]any)
	for _, c := range commands {
		steps(at(c, "steps"))
	}
	workflows, _ := at(config, "workflows").(map[string]any)
	for _, wf := range workflows {
		list, _ := at(wf, "jobs").([]any)
		for _, j := range list {
			switch j := j.(type) {
			case string:
				check("jobs", j, nil)
			case map[string]any:
				for ref, args := range j {
					check("jobs", ref, args)
				}
			}
		}
	}
	examples, _ := at(config, "examples").(map[string]any)
	for _, ex := range examples {
		problems = append(problems, orbUsesProblems(at(ex, "usage"), orb, false)...)
	}
	return problems
}

// builtinSteps are CircleCI's own steps, which are no command of the orb.
var builtinSteps = map[string]bool{
	"run": true, "checkout": true, "setup_remote_docker": true, "save_cache": true, "restore_cache": true,
	"store_artifacts": true, "store_test_results": true, "persist_to_workspace": true,
	"attach_workspace": true, "add_ssh_keys": true, "when": true, "unless": true,
}

// TestOrbMatchesTheConfigSchema: every file of the orb's source, the packed
// orb and its examples are what CircleCI accepts, per its own schema, and the
// orb's jobs and examples invoke its commands with parameters they have.
func TestOrbMatchesTheConfigSchema(t *testing.T) {
	schema := compileJSONSchema(t, "circleci-config.schema.json")
	n := 0
	for _, section := range orbSections {
		files, _ := filepath.Glob(filepath.Join(orbSource, section, "*.yml"))
		for _, f := range files {
			n++
			name := strings.TrimSuffix(filepath.Base(f), ".yml")
			t.Run(section+"/"+name, func(t *testing.T) {
				if p := orbPieceProblems(schema, section, name, readOrbFile(t, f)); len(p) > 0 {
					t.Errorf("%s:\n%s", f, strings.Join(p, "\n"))
				}
			})
		}
	}
	orb := packOrb(t)
	for _, want := range []string{"commands.install", "commands.pull", "jobs.archive", "executors.default", "executors.image",
		"examples.archive-workflow-to-s3", "examples.nightly-organisation-backup"} {
		section, name, _ := strings.Cut(want, ".")
		if at(orb, section, name) == nil {
			t.Errorf("the orb has no %s", want)
		}
	}
	if n < 6 {
		t.Errorf("%d files under %s", n, orbSource)
	}
	if p := packedOrbProblems(schema, orb); len(p) > 0 {
		t.Errorf("the packed orb:\n%s", strings.Join(p, "\n"))
	}
	for _, c := range []struct{ section, name, script string }{
		{"commands", "install", "install.sh"}, {"commands", "pull", "pull.sh"},
	} {
		script, _ := os.ReadFile(filepath.Join(orbSource, "scripts", c.script))
		if got := at(orb, c.section, c.name, "steps", 0, "run", "command"); got != string(script) {
			t.Errorf("the packed %s %s does not run scripts/%s", c.section, c.name, c.script)
		}
		// CircleCI reads << in a command as the start of a parameter, so a
		// heredoc or a here-string would break the step.
		if bytes.Contains(script, []byte("<<")) {
			t.Errorf("scripts/%s has <<, which CircleCI takes for a parameter reference", c.script)
		}
	}
}

// TestOrbChecksCatchBrokenOrbs: a misspelt key in a command, job, executor
// or example, a wrong value, and a misspelt or missing parameter in an
// invocation are reported.
func TestOrbChecksCatchBrokenOrbs(t *testing.T) {
	schema := compileJSONSchema(t, "circleci-config.schema.json")
	for _, c := range []struct{ file, old, new string }{
		{"commands/pull.yml", "\nsteps:", "\nstep:"},
		{"commands/pull.yml", "    type: env_var_name", "    type: env_var"},
		{"commands/pull.yml", "    default: always", "    defualt: always"},
		{"commands/install.yml", "    type: string", "    type: text"},
		{"commands/pull.yml", "    default: always", "    default: sometimes"},
		{"jobs/archive.yml", "\nsteps:", "\nstepps:"},
		{"executors/default.yml", "\ndocker:", "\ndockers:"},
		{"executors/default.yml", "    default: small", "    default: tiny"},
		{"examples/archive-workflow-to-s3.yml", "\nusage:", "\nusag:"},
		{"examples/archive-workflow-to-s3.yml", "[success, failed]", "[success, failure]"},
		{"examples/archive-workflow-to-s3.yml", "            to: s3:", "            too: s3:"},
		{"examples/archive-workflow-to-s3.yml", "            to: s3:", "            # to: s3:"},
		{"examples/nightly-organisation-backup.yml", "artifact-sync/pull:", "artifact-sync/pul:"},
		{"examples/nightly-organisation-backup.yml", "      parallelism: 4", "      paralelism: 4"},
		{"jobs/archive.yml", "      when: <<parameters.when>>", "      wen: <<parameters.when>>"},
		{"jobs/archive.yml", "            version: <<parameters.version>>", "            versoin: <<parameters.version>>"},
		{"executors/image.yml", "    user: \"65532\"", "    user: 65532"},
		{"examples/archive-workflow-to-s3.yml", "              tag: \"1\"", "              tga: \"1\""},
		{"examples/archive-workflow-to-s3.yml", "artifact-sync/image", "artifact-sync/imag"},
	} {
		t.Run(c.file+" "+strings.TrimSpace(c.new), func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join(orbSource, c.file))
			if err != nil {
				t.Fatal(err)
			}
			broken := mutate(t, string(src), c.old, c.new)
			var def any
			if err := yaml.Unmarshal([]byte(broken), &def); err != nil {
				t.Fatal(err)
			}
			section, file := filepath.Split(c.file)
			section = strings.TrimSuffix(section, "/")
			name := strings.TrimSuffix(file, ".yml")
			p := orbPieceProblems(schema, section, name, def)
			orb := packOrb(t)
			orb[section].(map[string]any)[name] = def
			p = append(p, packedOrbProblems(schema, orb)...)
			t.Logf("caught: %s", strings.Join(p, "\n"))
			if len(p) == 0 {
				t.Errorf("%s with %q for %q passes the checks", c.file, c.new, c.old)
			}
		})
	}
}

// TestCircleCIRecipesUseTheOrbAsItIs: the README's CircleCI recipes that
// use the orb invoke jobs and commands it has, with parameters they have.
func TestCircleCIRecipesUseTheOrbAsItIs(t *testing.T) {
	orb := packOrb(t)
	uses := 0
	for _, name := range []string{"circleci-archive", "circleci-schedule"} {
		src := readmeRecipe(t, name)
		doc, err := yamlValue(src)
		if err != nil {
			t.Fatal(err)
		}
		if at(doc, "orbs", orbName) == nil {
			continue
		}
		uses++
		if got := at(doc, "orbs", orbName); got != "artifact-sync/artifact-sync@1" {
			t.Errorf("the %s recipe imports %v, not the published artifact-sync/artifact-sync@1", name, got)
		}
		if p := orbUsesProblems(doc, orb, false); len(p) > 0 {
			t.Errorf("the %s recipe:\n%s", name, strings.Join(p, "\n"))
		}
		broken, err := yamlValue(mutate(t, src, "      to: ", "      too: "))
		if err != nil {
			t.Fatal(err)
		}
		if p := orbUsesProblems(broken, orb, false); len(p) == 0 {
			t.Errorf("the %s recipe with a misspelt parameter passes the checks", name)
		}
	}
	if uses == 0 {
		t.Error("no CircleCI recipe of the README uses the orb")
	}
}

// orbPullParams returns the parameters the orb's pull command gets from an
// invocation of SECTION.NAME (the archive job or the pull command): the
// given ones over that definition's defaults.
func orbPullParams(orb map[string]any, section, name string, args map[string]any) map[string]string {
	params := map[string]string{}
	defs, _ := at(orb, "commands", "pull", "parameters").(map[string]any)
	for p := range defs {
		if d := at(orb, section, name, "parameters", p, "default"); d != nil {
			params[p] = fmt.Sprint(d)
		}
		if v, ok := args[p]; ok {
			params[p] = fmt.Sprint(v)
		}
	}
	return params
}

// runPullScript runs scripts/pull.sh with the pull command's parameters in
// the environment, as the orb passes them, and env, against a fake
// artifact-sync that records its arguments. It returns them, what the
// script printed, and its error.
func runPullScript(t *testing.T, params map[string]string, env ...string) (args []string, out string, err error) {
	t.Helper()
	dir := t.TempDir()
	record := filepath.Join(dir, "argv")
	fake := "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\0' \"$a\"; done >" + ccsync.ShellQuote(record) + "\nprintf '%s' \"$CIRCLE_TOKEN\" >" + ccsync.ShellQuote(record+".token") + "\n"
	if err := os.WriteFile(filepath.Join(dir, "artifact-sync"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", filepath.Join(orbSource, "scripts", "pull.sh"))
	cmd.Env = append([]string{"PATH=" + dir + string(os.PathListSeparator) + os.Getenv("PATH")}, env...)
	for name, v := range params {
		cmd.Env = append(cmd.Env, "PARAM_"+strings.ToUpper(strings.ReplaceAll(name, "-", "_"))+"="+v)
	}
	o, err := cmd.CombinedOutput()
	data, rerr := os.ReadFile(record)
	if rerr == nil {
		args = strings.Split(strings.TrimSuffix(string(data), "\x00"), "\x00")
	}
	return args, string(o), err
}

// envRef finds the variables a parameter refers to.
var envRef = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)`)

// orbRecipeCommands returns, for each invocation of the orb's archive job or
// pull command in the README's CircleCI recipes, the artifact-sync command
// line scripts/pull.sh runs for it, written as a shell command with the
// variables it expands left as "$NAME", so that TestREADMEExamplesRun runs
// it against the fake CircleCI as it runs the other recipes' commands.
func orbRecipeCommands(t *testing.T, recipe string) []string {
	t.Helper()
	doc, err := yamlValue(readmeRecipe(t, recipe))
	if err != nil {
		t.Fatal(err)
	}
	if at(doc, "orbs", orbName) == nil {
		return nil
	}
	orb := packOrb(t)
	var invocations []map[string]string
	workflows, _ := at(doc, "workflows").(map[string]any)
	for _, wf := range workflows {
		list, _ := at(wf, "jobs").([]any)
		for _, j := range list {
			if args, ok := at(j, orbName+"/archive").(map[string]any); ok {
				invocations = append(invocations, orbPullParams(orb, "jobs", "archive", args))
			}
		}
	}
	jobs, _ := at(doc, "jobs").(map[string]any)
	for _, job := range jobs {
		steps, _ := at(job, "steps").([]any)
		for _, s := range steps {
			if args, ok := at(s, orbName+"/pull").(map[string]any); ok {
				invocations = append(invocations, orbPullParams(orb, "commands", "pull", args))
			}
		}
	}
	var cmds []string
	for _, params := range invocations {
		// Each variable the parameters name holds its own reference, so the
		// command comes out as written; the token is a placeholder.
		env := []string{params["token"] + "=placeholder"}
		for _, v := range params {
			for _, m := range envRef.FindAllStringSubmatch(v, -1) {
				env = append(env, m[1]+"=$"+m[1])
			}
		}
		args, out, err := runPullScript(t, params, env...)
		if err != nil {
			t.Fatalf("pull.sh for the %s recipe: %v\n%s", recipe, err, out)
		}
		words := []string{"artifact-sync"}
		for _, a := range args {
			if strings.Contains(a, "$") {
				a = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "`", "\\`").Replace(a) + `"`
			} else {
				a = ccsync.ShellQuote(a)
			}
			words = append(words, a)
		}
		cmds = append(cmds, strings.Join(words, " "))
	}
	return cmds
}

// TestPullScriptBuildsTheCommandLine: the pull command's parameters become
// artifact-sync's arguments word for word (a selection with quoted spaces,
// variables expanded, empty filters left out, no command ever run), and
// the token reaches the tool through the variable the token parameter names
// without appearing in what the step prints.
func TestPullScriptBuildsTheCommandLine(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the orb's scripts run in bash on Linux and macOS executors")
	}
	orb := packOrb(t)
	defaults := orbPullParams(orb, "commands", "pull", map[string]any{"to": "s3://ci-archive/gh/${CIRCLE_PROJECT_USERNAME}/$CIRCLE_PROJECT_REPONAME"})
	env := []string{"CIRCLE_TOKEN=tok-default-0123456789", "CIRCLE_WORKFLOW_ID=wf-5e3f", "CIRCLE_PROJECT_USERNAME=acme", "CIRCLE_PROJECT_REPONAME=widgets"}
	with := func(changes ...string) map[string]string {
		p := maps.Clone(defaults)
		for i := 0; i < len(changes); i += 2 {
			p[changes[i]] = changes[i+1]
		}
		return p
	}
	for _, c := range []struct {
		name   string
		params map[string]string
		env    []string
		want   []string
		token  string
	}{
		{"defaults", defaults, nil,
			[]string{"pull", "gh/acme/widgets", "--workflow", "wf-5e3f", "--to", "s3://ci-archive/gh/acme/widgets", "--layout", "{job_number}/{node_index}/{path}"},
			"tok-default-0123456789"},
		{"filters and extra args", with("include", "**/*.xml", "exclude", "tmp/**", "extra-args", "-q --concurrency 16"), nil,
			[]string{"pull", "gh/acme/widgets", "--workflow", "wf-5e3f", "--to", "s3://ci-archive/gh/acme/widgets", "--layout", "{job_number}/{node_index}/{path}",
				"--include", "**/*.xml", "--exclude", "tmp/**", "-q", "--concurrency", "16"},
			"tok-default-0123456789"},
		{"a selection with spaces, quotes and variables", with("selection", `--branch "release 2" --job-name 'test *' --workflow-name "$WF_NAME" $(touch pwned) `+"`touch pwned`", "layout", ""),
			[]string{"WF_NAME=nightly build; rm -rf /"},
			[]string{"pull", "gh/acme/widgets", "--branch", "release 2", "--job-name", "test *", "--workflow-name", "nightly build; rm -rf /", "$(touch", "pwned)", "`touch", "pwned`",
				"--to", "s3://ci-archive/gh/acme/widgets"},
			"tok-default-0123456789"},
		{"the organisation, sharded, no project", with("project", "", "selection", `--org gh/acme --since 2d --shard "$CIRCLE_NODE_INDEX/$CIRCLE_NODE_TOTAL"`, "to", "s3://ci-archive/"),
			[]string{"CIRCLE_NODE_INDEX=2", "CIRCLE_NODE_TOTAL=4"},
			[]string{"pull", "--org", "gh/acme", "--since", "2d", "--shard", "2/4", "--to", "s3://ci-archive/", "--layout", "{job_number}/{node_index}/{path}"},
			"tok-default-0123456789"},
		{"follow, with the workflow", with("follow", "true"), nil,
			[]string{"pull", "gh/acme/widgets", "--workflow", "wf-5e3f", "--to", "s3://ci-archive/gh/acme/widgets", "--layout", "{job_number}/{node_index}/{path}", "--follow"},
			"tok-default-0123456789"},
		{"the archive job follows its workflow", orbPullParams(orb, "jobs", "archive", map[string]any{"to": "s3://ci-archive/x"}), nil,
			[]string{"pull", "gh/acme/widgets", "--workflow", "wf-5e3f", "--to", "s3://ci-archive/x", "--layout", "{job_number}/{node_index}/{path}", "--follow"},
			"tok-default-0123456789"},
		{"follow, with a selection --follow does not take: pulled once", with("follow", "true", "project", "", "selection", "--org gh/acme --since 2d", "to", "s3://ci-archive/"), nil,
			[]string{"pull", "--org", "gh/acme", "--since", "2d", "--to", "s3://ci-archive/", "--layout", "{job_number}/{node_index}/{path}"},
			"tok-default-0123456789"},
		{"the token from another variable", with("token", "ARCHIVE_TOKEN"), []string{"ARCHIVE_TOKEN=tok-archive-9876543210"},
			[]string{"pull", "gh/acme/widgets", "--workflow", "wf-5e3f", "--to", "s3://ci-archive/gh/acme/widgets", "--layout", "{job_number}/{node_index}/{path}"},
			"tok-archive-9876543210"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			got, out, err := runPullScript(t, c.params, append(append(slices.Clone(env), c.env...), "HOME="+dir)...)
			if err != nil {
				t.Fatalf("pull.sh: %v\n%s", err, out)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("artifact-sync ran with\n%q\nwant\n%q", got, c.want)
			}
			if strings.Contains(out, c.token) || strings.Contains(out, "tok-") {
				t.Errorf("the step prints the token:\n%s", out)
			}
			if _, err := os.Stat("pwned"); err == nil {
				os.Remove("pwned")
				t.Errorf("a command in the selection was run")
			}
		})
	}
	t.Run("the token reaches the tool", func(t *testing.T) {
		dir := t.TempDir()
		fake := "#!/bin/sh\nprintf '%s' \"$CIRCLE_TOKEN\" >" + ccsync.ShellQuote(filepath.Join(dir, "token")) + "\n"
		os.WriteFile(filepath.Join(dir, "artifact-sync"), []byte(fake), 0o755)
		cmd := exec.Command("bash", filepath.Join(orbSource, "scripts", "pull.sh"))
		cmd.Env = append(slices.Clone(env), "PATH="+dir+":"+os.Getenv("PATH"), "ARCHIVE_TOKEN=tok-archive-9876543210",
			"PARAM_TO=/tmp/x", "PARAM_TOKEN=ARCHIVE_TOKEN", "PARAM_SELECTION=--workflow x")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if tok, _ := os.ReadFile(filepath.Join(dir, "token")); string(tok) != "tok-archive-9876543210" {
			t.Errorf("the tool got CIRCLE_TOKEN=%q, want the value of $ARCHIVE_TOKEN", tok)
		}
	})
	for _, c := range []struct {
		name   string
		params map[string]string
		want   string
	}{
		{"an empty token variable", with("token", "NO_SUCH_TOKEN"), "$NO_SUCH_TOKEN is empty"},
		{"a token parameter that is no name", with("token", "$(id)"), "is not an environment variable name"},
		{"no destination", with("to", ""), "the to parameter is empty"},
		{"an unclosed quote", with("selection", `--branch "main`), `a " is not closed`},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, out, err := runPullScript(t, c.params, env...)
			if err == nil || got != nil {
				t.Fatalf("pull.sh ran artifact-sync %q; want it to refuse\n%s", got, out)
			}
			if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 1 || !strings.Contains(out, c.want) {
				t.Errorf("pull.sh says %q, want one line with %q", out, c.want)
			}
		})
	}
}

// releaseArchive packs bin as the release script lays a release out:
// artifact-sync_VERSION_OS_ARCH.tar.gz holding the folder of the same name
// with the binary, README.md, LICENSE and man/.
func releaseArchive(t *testing.T, bin, version, goos, goarch string) (name string, data []byte) {
	t.Helper()
	top := fmt.Sprintf("artifact-sync_%s_%s_%s", version, goos, goarch)
	exe, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	add := func(name string, mode int64, body []byte) {
		typ := byte(tar.TypeReg)
		if name == "" || strings.HasSuffix(name, "/") {
			typ = tar.TypeDir
		}
		if err := tw.WriteHeader(&tar.Header{Name: top + "/" + name, Mode: mode, Size: int64(len(body)), Typeflag: typ}); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	}
	add("", 0o755, nil)
	add("artifact-sync", 0o755, exe)
	add("README.md", 0o644, []byte("# artifact-sync\n"))
	add("LICENSE", 0o644, []byte("license\n"))
	add("man/", 0o755, nil)
	add("man/artifact-sync.1", 0o644, []byte(".TH ARTIFACT-SYNC 1\n"))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return top + ".tar.gz", buf.Bytes()
}

// releaseServer serves a release as GitHub does: the assets under
// /download/vVERSION/ and /latest redirecting to /tag/vVERSION.
func releaseServer(t *testing.T, version string, assets map[string][]byte) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /latest", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/tag/v"+version, http.StatusFound)
	})
	mux.HandleFunc("GET /tag/{tag}", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "release page\n") })
	mux.HandleFunc("GET /download/{tag}/{name}", func(w http.ResponseWriter, r *http.Request) {
		data, ok := assets[r.PathValue("name")]
		if r.PathValue("tag") != "v"+version || !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(data)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// sha256Sums writes SHA256SUMS as sha256sum does.
func sha256Sums(files map[string][]byte) []byte {
	var names []string
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		sum := sha256.Sum256(files[n])
		fmt.Fprintf(&b, "%s  %s\n", hex.EncodeToString(sum[:]), n)
	}
	return []byte(b.String())
}

// TestInstallScriptInstallsTheRelease runs the orb's install command
// (scripts/install.sh, in bash) against a local server serving a release
// made in the release layout: the newest release (found with curl, or with
// wget alone) or a pinned one installs and runs; a download
// that does not match SHA256SUMS, or a machine there is no build for, is
// refused with one clear line and nothing installed.
func TestInstallScriptInstallsTheRelease(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the install script is tested on Linux and macOS; it runs in Git Bash on Windows")
	}
	const version = "1.2.3"
	bin := buildTool(t)
	name, archive := releaseArchive(t, bin, version, runtime.GOOS, runtime.GOARCH)
	other, otherArchive := releaseArchive(t, "/bin/sh", version, "linux", "riscv64")
	good := map[string][]byte{name: archive, other: otherArchive}
	srv := releaseServer(t, version, map[string][]byte{name: archive, "SHA256SUMS": sha256Sums(good)})
	tampered := slices.Clone(archive)
	tampered[len(tampered)/2] ^= 0xff
	bad := releaseServer(t, version, map[string][]byte{name: tampered, "SHA256SUMS": sha256Sums(good)})

	want, _ := exec.Command(bin, "version").Output()
	install := func(t *testing.T, base, version string, path ...string) (dir, out string, err error) {
		dir = filepath.Join(t.TempDir(), "bin")
		cmd := exec.Command("bash", filepath.Join(orbSource, "scripts", "install.sh"))
		p := os.Getenv("PATH")
		if len(path) > 0 {
			p = strings.Join(path, ":")
		}
		cmd.Env = []string{"PATH=" + p, "HOME=" + t.TempDir(), "ARTIFACT_SYNC_RELEASES_URL=" + base,
			"PARAM_VERSION=" + version, "PARAM_INSTALL_PATH=" + dir}
		o, err := cmd.CombinedOutput()
		return dir, string(o), err
	}
	installed := func(t *testing.T, dir, out string) {
		got, err := os.ReadFile(filepath.Join(dir, "artifact-sync"))
		if exe, _ := os.ReadFile(bin); err != nil || !bytes.Equal(got, exe) {
			t.Fatalf("%s/artifact-sync is not the release's binary (%v)\n%s", dir, err, out)
		}
		if !strings.HasSuffix(out, string(want)) || len(want) == 0 {
			t.Errorf("the install does not end with what 'artifact-sync version' prints (%q):\n%s", want, out)
		}
	}
	refused := func(t *testing.T, dir, out string, err error, says ...string) {
		if err == nil {
			t.Fatalf("the install succeeded:\n%s", out)
		}
		last := strings.Split(strings.TrimSpace(out), "\n")
		line := last[len(last)-1]
		for _, s := range says {
			if !strings.Contains(line, s) {
				t.Errorf("the install's last line does not say %q:\n%s", s, out)
			}
		}
		if entries, _ := os.ReadDir(dir); len(entries) > 0 {
			t.Errorf("the refused install left %d files in %s", len(entries), dir)
		}
	}

	t.Run("latest", func(t *testing.T) {
		dir, out, err := install(t, srv.URL, "latest")
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		installed(t, dir, out)
		if !strings.Contains(out, "Downloading artifact-sync "+version) {
			t.Errorf("the install does not say it found %s as the newest release:\n%s", version, out)
		}
	})
	t.Run("pinned", func(t *testing.T) {
		dir, out, err := install(t, srv.URL, "v"+version)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		installed(t, dir, out)
	})
	t.Run("latest, with wget alone", func(t *testing.T) {
		tools := t.TempDir()
		for _, tool := range []string{"bash", "uname", "mktemp", "awk", "cut", "sha256sum", "tar", "gzip", "install", "mkdir", "rm", "id", "dirname", "wget", "sed", "tr", "tail"} {
			p, err := exec.LookPath(tool)
			if err != nil {
				t.Skipf("%s is not installed", tool)
			}
			os.Symlink(p, filepath.Join(tools, tool))
		}
		dir, out, err := install(t, srv.URL, "latest", tools)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		installed(t, dir, out)
	})
	t.Run("a checksum that does not match", func(t *testing.T) {
		dir, out, err := install(t, bad.URL, version)
		sum := sha256.Sum256(tampered)
		goodSum := sha256.Sum256(archive)
		refused(t, dir, out, err, name, "does not match", hex.EncodeToString(goodSum[:]), hex.EncodeToString(sum[:]))
	})
	t.Run("an architecture with no build", func(t *testing.T) {
		fake := t.TempDir()
		os.WriteFile(filepath.Join(fake, "uname"), []byte("#!/bin/sh\ncase \"$1\" in -m) echo riscv64 ;; *) echo Linux ;; esac\n"), 0o755)
		dir, out, err := install(t, srv.URL, version, fake, os.Getenv("PATH"))
		refused(t, dir, out, err, "riscv64", "no release for the architecture")
	})
	t.Run("a version that does not exist", func(t *testing.T) {
		dir, out, err := install(t, srv.URL, "9.9.9")
		refused(t, dir, out, err, "9.9.9")
	})
}

// TestOrbScriptsPassShellcheck: the orb's scripts have no quoting or
// expansion mistake shellcheck knows of.
func TestOrbScriptsPassShellcheck(t *testing.T) {
	shellcheck, err := exec.LookPath("shellcheck")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("shellcheck is not installed (.ci/run installs it)")
		}
		t.Skip("shellcheck is not installed")
	}
	scripts, _ := filepath.Glob(filepath.Join(orbSource, "scripts", "*.sh"))
	if len(scripts) < 2 {
		t.Fatalf("%d scripts under %s/scripts", len(scripts), orbSource)
	}
	for _, s := range scripts {
		if out, err := exec.Command(shellcheck, "--shell=bash", s).CombinedOutput(); err != nil {
			t.Errorf("shellcheck %s: %v\n%s", s, err, out)
		}
	}
}

// TestInstallScriptInstallsWhatReleaseBuilds: the orb's install script
// against the archives and SHA256SUMS that .ci/release itself writes (the
// image among them, which the script must not mind), served on loopback as
// GitHub serves release assets: it installs the binary, which says the
// release's version.
func TestInstallScriptInstallsWhatReleaseBuilds(t *testing.T) {
	out := release(t) // skips off linux and with -short
	assets := readTree(t, out)
	if _, ok := assets["SHA256SUMS"]; !ok {
		t.Fatalf(".ci/release wrote no SHA256SUMS: %v", slices.Collect(maps.Keys(assets)))
	}
	srv := releaseServer(t, releaseVersion, assets)
	dir := filepath.Join(t.TempDir(), "bin")
	cmd := exec.Command("bash", filepath.Join(orbSource, "scripts", "install.sh"))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "ARTIFACT_SYNC_RELEASES_URL=" + srv.URL,
		"PARAM_VERSION=latest", "PARAM_INSTALL_PATH=" + dir}
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("install: %v\n%s", err, b)
	}
	got, err := exec.Command(filepath.Join(dir, "artifact-sync"), "version").Output()
	if err != nil || !strings.HasPrefix(string(got), "artifact-sync "+releaseVersion+" ") {
		t.Errorf("the installed binary says %q (%v), want artifact-sync %s", got, err, releaseVersion)
	}
	if !strings.Contains(string(b), "Checksum of artifact-sync_"+releaseVersion+"_linux_") {
		t.Errorf("the install does not say it checked the archive against SHA256SUMS:\n%s", b)
	}
}
