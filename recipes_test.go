package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

// schedulerSchemas holds the schemas of the schedulers the recipes run on,
// with their provenance in SOURCE.md beside them.
const schedulerSchemas = "sync/testdata/schedulers"

// readmeRecipe returns the fenced block that follows the line
// "<!-- recipe: NAME -->" in README.md. The README is a recipe's only copy,
// so what the tests check is what users copy.
func readmeRecipe(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?s)<!-- recipe: " + regexp.QuoteMeta(name) + " -->\n```[a-z]*\n(.*?)\n```\n")
	m := re.FindSubmatch(data)
	if m == nil {
		t.Fatalf("README.md has no recipe %q (a fenced block after <!-- recipe: %s -->)", name, name)
	}
	return string(m[1]) + "\n"
}

// mutate replaces the first old in src by new, failing when old is not
// there, so that a negative case cannot go vacuous when the recipe changes.
func mutate(t *testing.T, src, old, new string) string {
	t.Helper()
	if !strings.Contains(src, old) {
		t.Fatalf("the recipe no longer contains %q", old)
	}
	return strings.Replace(src, old, new, 1)
}

// yamlValue decodes YAML into the values encoding/json gives (maps with
// string keys, float64 numbers), which is what schemas are written against.
func yamlValue(src string) (any, error) {
	var v any
	if err := yaml.Unmarshal([]byte(src), &v); err != nil {
		return nil, err
	}
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return jsonschema.UnmarshalJSON(bytes.NewReader(data))
}

// compileJSONSchema compiles one of the draft-07 schemas under
// schedulerSchemas.
func compileJSONSchema(t *testing.T, file string) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(filepath.Join(schedulerSchemas, file))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft7)
	url := "file:///" + file
	if err := c.AddResource(url, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(url)
	if err != nil {
		t.Fatalf("compile %s: %v", file, err)
	}
	return s
}

// shardFlag finds a recipe command's --shard "$INDEX/TOTAL".
var shardFlag = regexp.MustCompile(`--shard "\$([A-Z_]+)/(\$[A-Z_]+|[0-9]+)"`)

// commandOf returns the artifact-sync command inside a step's shell text.
func commandOf(shell string) string {
	i := strings.Index(shell, "artifact-sync ")
	if i < 0 {
		return ""
	}
	return strings.TrimSpace(shell[i:])
}

// at walks a decoded YAML document along keys (strings) and indexes (ints).
func at(v any, path ...any) any {
	for _, p := range path {
		switch p := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[p]
		case int:
			s, _ := v.([]any)
			if p >= len(s) {
				return nil
			}
			v = s[p]
		}
	}
	return v
}

// integer reads a decoded YAML number (jsonschema.UnmarshalJSON keeps
// numbers as json.Number).
func integer(v any) (int, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(n.String())
	return i, err == nil
}

// circleCIShells returns the shell commands of a CircleCI config's run steps.
func circleCIShells(doc any) []string {
	var shells []string
	jobs, _ := at(doc, "jobs").(map[string]any)
	for _, job := range jobs {
		steps, _ := at(job, "steps").([]any)
		for _, step := range steps {
			switch run := at(step, "run").(type) {
			case string:
				shells = append(shells, run)
			case map[string]any:
				if c, ok := run["command"].(string); ok {
					shells = append(shells, c)
				}
			}
		}
	}
	return shells
}

// circleCIProblems validates a CircleCI config against CircleCI's schema
// and, for the scheduled backup (sharded), checks that parallelism starts
// the shards the command expects.
func circleCIProblems(t *testing.T, schema *jsonschema.Schema, src string, sharded bool) []string {
	doc, err := yamlValue(src)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	if err := schema.Validate(doc); err != nil {
		problems = append(problems, err.Error())
	}
	if !sharded {
		return problems
	}
	for name, job := range at(doc, "jobs").(map[string]any) {
		for _, shell := range circleCIShells(map[string]any{"jobs": map[string]any{name: job}}) {
			m := shardFlag.FindStringSubmatch(shell)
			if m == nil {
				continue
			}
			if m[1] != "CIRCLE_NODE_INDEX" || m[2] != "$CIRCLE_NODE_TOTAL" {
				problems = append(problems, fmt.Sprintf("job %s shards by %s/%s, not $CIRCLE_NODE_INDEX/$CIRCLE_NODE_TOTAL", name, m[1], m[2]))
			}
			if p, _ := integer(at(job, "parallelism")); p < 2 {
				problems = append(problems, fmt.Sprintf("job %s runs --shard without parallelism (%v)", name, at(job, "parallelism")))
			}
		}
	}
	return problems
}

// TestCircleCIRecipesMatchTheConfigSchema: both CircleCI recipes (the
// archive job and the sharded scheduled backup) are configs CircleCI
// accepts, per its own config schema.
func TestCircleCIRecipesMatchTheConfigSchema(t *testing.T) {
	schema := compileJSONSchema(t, "circleci-config.schema.json")
	for _, name := range []string{"circleci-archive", "circleci-schedule"} {
		t.Run(name, func(t *testing.T) {
			if p := circleCIProblems(t, schema, readmeRecipe(t, name), name == "circleci-schedule"); len(p) > 0 {
				t.Errorf("the README's %s recipe:\n%s", name, strings.Join(p, "\n"))
			}
		})
	}
	doc, err := yamlValue(readmeRecipe(t, "circleci-schedule"))
	if err != nil {
		t.Fatal(err)
	}
	if at(doc, "workflows", "nightly-backup", "when") == nil {
		t.Errorf("the scheduled backup's workflow runs on every push, not only on its schedule")
	}
}

// TestCircleCIConfigSchemaCatchesBrokenRecipes: a misspelt key, a wrong
// type or a missing parallelism are reported, so the test above would
// catch a recipe broken that way.
func TestCircleCIConfigSchemaCatchesBrokenRecipes(t *testing.T) {
	schema := compileJSONSchema(t, "circleci-config.schema.json")
	for _, c := range []struct{ recipe, old, new string }{
		{"circleci-schedule", "parallelism: 4", "paralelism: 4"},
		{"circleci-schedule", "    steps:", "    step:"},
		{"circleci-schedule", "    docker:", "    dockers:"},
		{"circleci-schedule", "parallelism: 4", "parallelism: four"},
		{"circleci-schedule", "    parallelism: 4\n", ""},
		{"circleci-archive", "version: 2.1\n", ""},
		{"circleci-archive", "- test: [success, failed]", "- test: [success, failure]"},
		{"circleci-archive", "          requires:\n", "          requires: test\n          needs:\n"},
	} {
		t.Run(c.recipe+" "+strings.TrimSpace(c.old)+" to "+strings.TrimSpace(c.new), func(t *testing.T) {
			src := mutate(t, readmeRecipe(t, c.recipe), c.old, c.new)
			p := circleCIProblems(t, schema, src, c.recipe == "circleci-schedule")
			t.Logf("caught: %s", strings.Join(p, "\n"))
			if len(p) == 0 {
				t.Errorf("%s with %q for %q passes the checks", c.recipe, c.new, c.old)
			}
		})
	}
}

// closeObjects makes every object schema that lists its properties refuse
// others. Kubernetes' OpenAPI leaves additionalProperties unset, while the
// API server (strict field validation, kubectl's default) refuses an
// unknown field: closing them makes a misspelt field an error here too.
func closeObjects(s *openapi3.Schema, seen map[*openapi3.Schema]bool) {
	if s == nil || seen[s] {
		return
	}
	seen[s] = true
	if len(s.Properties) > 0 && s.AdditionalProperties.Has == nil && s.AdditionalProperties.Schema == nil {
		s.AdditionalProperties.Has = openapi3.Ptr(false)
	}
	for _, p := range s.Properties {
		closeObjects(p.Value, seen)
	}
	if s.Items != nil {
		closeObjects(s.Items.Value, seen)
	}
	if s.AdditionalProperties.Schema != nil {
		closeObjects(s.AdditionalProperties.Schema.Value, seen)
	}
	for _, group := range []openapi3.SchemaRefs{s.AllOf, s.AnyOf, s.OneOf} {
		for _, r := range group {
			closeObjects(r.Value, seen)
		}
	}
}

// cronJobSchema returns batch/v1's CronJob schema from Kubernetes' OpenAPI
// document, with its objects closed.
func cronJobSchema(t *testing.T) *openapi3.Schema {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(schedulerSchemas, "kubernetes-batch-v1.openapi.json"))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(data)
	if err != nil {
		t.Fatal(err)
	}
	ref := doc.Components.Schemas["io.k8s.api.batch.v1.CronJob"]
	if ref == nil || ref.Value == nil {
		t.Fatal("the batch/v1 OpenAPI document has no io.k8s.api.batch.v1.CronJob")
	}
	closeObjects(ref.Value, map[*openapi3.Schema]bool{})
	return ref.Value
}

// cronJobProblems validates a CronJob manifest against the schema and
// checks what the recipe is for: Indexed completion over as many indexes as
// the command has shards, no overlapping runs, a non-root pod, secrets for
// the token and the AWS keys.
func cronJobProblems(schema *openapi3.Schema, src string) []string {
	doc, err := yamlValue(src)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	if err := schema.VisitJSON(doc, openapi3.MultiErrors()); err != nil {
		problems = append(problems, err.Error())
	}
	want := func(what string, got, want any) {
		if fmt.Sprint(got) != fmt.Sprint(want) {
			problems = append(problems, fmt.Sprintf("%s is %v, want %v", what, got, want))
		}
	}
	want("apiVersion", at(doc, "apiVersion"), "batch/v1")
	want("kind", at(doc, "kind"), "CronJob")
	want("spec.concurrencyPolicy", at(doc, "spec", "concurrencyPolicy"), "Forbid")
	job := at(doc, "spec", "jobTemplate", "spec")
	want("completionMode", at(job, "completionMode"), "Indexed")
	pod := at(job, "template", "spec")
	want("the pod's runAsNonRoot", at(pod, "securityContext", "runAsNonRoot"), true)
	container := at(pod, "containers", 0)
	args, _ := at(container, "args", 0).(string)
	m := shardFlag.FindStringSubmatch(args)
	if m == nil {
		return append(problems, fmt.Sprintf("the container's command has no --shard: %q", args))
	}
	want("the shard index variable", m[1], "JOB_COMPLETION_INDEX")
	want("completions", at(job, "completions"), m[2])
	want("parallelism", at(job, "parallelism"), m[2])
	secrets := map[string]bool{}
	envs, _ := at(container, "env").([]any)
	for _, e := range envs {
		if at(e, "valueFrom", "secretKeyRef", "name") != nil {
			secrets[fmt.Sprint(at(e, "name"))] = true
		}
	}
	for _, name := range []string{"CIRCLE_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
		if !secrets[name] {
			problems = append(problems, name+" does not come from a Secret")
		}
	}
	return problems
}

// TestKubernetesRecipeMatchesTheCronJobSchema: the README's CronJob is one
// the Kubernetes API accepts, per the batch/v1 OpenAPI schema, and is set up
// as the section says.
func TestKubernetesRecipeMatchesTheCronJobSchema(t *testing.T) {
	if p := cronJobProblems(cronJobSchema(t), readmeRecipe(t, "kubernetes-cronjob")); len(p) > 0 {
		t.Errorf("the README's CronJob:\n%s", strings.Join(p, "\n"))
	}
}

// TestCronJobChecksCatchBrokenRecipes: a misspelt field (which the API
// server refuses), a wrong type, and shards that do not match the indexes
// are reported.
func TestCronJobChecksCatchBrokenRecipes(t *testing.T) {
	schema := cronJobSchema(t)
	for _, c := range []struct{ old, new string }{
		{"completionMode: Indexed", "completionMod: Indexed"},
		{"concurrencyPolicy: Forbid", "concurencyPolicy: Forbid"},
		{"secretKeyRef:", "secretRef:"},
		{"runAsNonRoot: true", "runAsNonRoot: yes"},
		{"completions: 4", `completions: "4"`},
		{"readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true"},
		{"completions: 4", "completions: 3"},
		{`"$JOB_COMPLETION_INDEX/4"`, `"$JOB_INDEX/4"`},
		{"completionMode: Indexed", "completionMode: NonIndexed"},
	} {
		t.Run(c.new, func(t *testing.T) {
			src := mutate(t, readmeRecipe(t, "kubernetes-cronjob"), c.old, c.new)
			p := cronJobProblems(schema, src)
			t.Logf("caught: %s", strings.Join(p, "\n"))
			if len(p) == 0 {
				t.Errorf("the CronJob with %q for %q passes the checks", c.new, c.old)
			}
		})
	}
}

// githubWorkflowProblems validates a workflow against SchemaStore's
// workflow schema and checks that it runs on a schedule with a matrix over
// exactly the shards 0..N-1 of its command's --shard.
func githubWorkflowProblems(schema *jsonschema.Schema, src string) []string {
	doc, err := yamlValue(src)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	if err := schema.Validate(doc); err != nil {
		problems = append(problems, err.Error())
	}
	cron, _ := at(doc, "on", "schedule", 0, "cron").(string)
	if len(strings.Fields(cron)) != 5 {
		problems = append(problems, fmt.Sprintf("on.schedule's cron is %q, not five fields", cron))
	}
	jobs, _ := at(doc, "jobs").(map[string]any)
	sharded := 0
	for name, job := range jobs {
		steps, _ := at(job, "steps").([]any)
		for _, step := range steps {
			run, _ := at(step, "run").(string)
			m := shardFlag.FindStringSubmatch(run)
			if m == nil {
				continue
			}
			sharded++
			n, err := strconv.Atoi(m[2])
			if err != nil {
				problems = append(problems, fmt.Sprintf("job %s: --shard's total %s is not a number", name, m[2]))
				continue
			}
			if env := at(job, "env", m[1]); env != "${{ matrix.shard }}" {
				problems = append(problems, fmt.Sprintf("job %s: $%s is %v, not ${{ matrix.shard }}", name, m[1], env))
			}
			var got, want []int
			for i := range n {
				want = append(want, i)
			}
			shards, _ := at(job, "strategy", "matrix", "shard").([]any)
			for _, s := range shards {
				i, ok := integer(s)
				if !ok {
					i = -1
				}
				got = append(got, i)
			}
			if !slices.Equal(got, want) {
				problems = append(problems, fmt.Sprintf("job %s: matrix.shard is %v, want the shards 0..%d of --shard", name, got, n-1))
			}
		}
	}
	if sharded == 0 {
		problems = append(problems, "no step runs artifact-sync with --shard")
	}
	return problems
}

// TestGitHubActionsRecipeMatchesTheWorkflowSchema: the README's workflow is
// valid per SchemaStore's schema, runs on a schedule, and its matrix covers
// every shard once.
func TestGitHubActionsRecipeMatchesTheWorkflowSchema(t *testing.T) {
	schema := compileJSONSchema(t, "github-workflow.schema.json")
	if p := githubWorkflowProblems(schema, readmeRecipe(t, "github-actions")); len(p) > 0 {
		t.Errorf("the README's GitHub Actions workflow:\n%s", strings.Join(p, "\n"))
	}
}

// TestGitHubWorkflowChecksCatchBrokenRecipes: a misspelt key, a matrix that
// leaves out a shard or a missing schedule are reported.
func TestGitHubWorkflowChecksCatchBrokenRecipes(t *testing.T) {
	schema := compileJSONSchema(t, "github-workflow.schema.json")
	for _, c := range []struct{ old, new string }{
		{"runs-on: ubuntu-latest", "run-on: ubuntu-latest"},
		{"timeout-minutes: 360", "timeout-minute: 360"},
		{"fail-fast: false", "failfast: false"},
		{"shard: [0, 1, 2, 3]", "shard: [0, 1, 2]"},
		{"shard: [0, 1, 2, 3]", "shard: [1, 2, 3, 4]"},
		{"SHARD: ${{ matrix.shard }}", "SHARD: 0"},
		{`cron: "30 2 * * *"`, `cron: "30 2 * *"`},
	} {
		t.Run(c.new, func(t *testing.T) {
			src := mutate(t, readmeRecipe(t, "github-actions"), c.old, c.new)
			p := githubWorkflowProblems(schema, src)
			t.Logf("caught: %s", strings.Join(p, "\n"))
			if len(p) == 0 {
				t.Errorf("the workflow with %q for %q passes the checks", c.new, c.old)
			}
		})
	}
}

// lifecycleProblems decodes the lifecycle JSON into the AWS SDK's S3 types
// (the AWS CLI's JSON uses the API's member names, as the SDK's fields do),
// refusing unknown members, and has the SDK send it to a loopback server
// that keeps the request, so the SDK's own validation of required members
// runs; it then checks that the rule expires objects (after more than
// CircleCI's 30 days) and aborts incomplete uploads.
func lifecycleProblems(ctx context.Context, src string) []string {
	var cfg types.BucketLifecycleConfiguration
	dec := json.NewDecoder(strings.NewReader(src))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return []string{err.Error()}
	}
	var sent []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sent, _ = io.ReadAll(r.Body)
	}))
	defer srv.Close()
	client := s3.New(s3.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(srv.URL), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("key", "secret", ""),
	})
	_, err := client.PutBucketLifecycleConfiguration(ctx, &s3.PutBucketLifecycleConfigurationInput{
		Bucket: aws.String("ci-archive"), LifecycleConfiguration: &cfg,
	})
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	if len(cfg.Rules) == 0 {
		problems = append(problems, "no rules")
	}
	for i, r := range cfg.Rules {
		if !slices.Contains(r.Status.Values(), r.Status) {
			problems = append(problems, fmt.Sprintf("rule %d: Status %q is none of %v", i, r.Status, r.Status.Values()))
		}
		if r.Expiration == nil || aws.ToInt32(r.Expiration.Days) <= 30 {
			problems = append(problems, fmt.Sprintf("rule %d does not expire objects after more than 30 days", i))
		}
		if r.AbortIncompleteMultipartUpload == nil || aws.ToInt32(r.AbortIncompleteMultipartUpload.DaysAfterInitiation) < 1 {
			problems = append(problems, fmt.Sprintf("rule %d does not abort incomplete multipart uploads", i))
		}
	}
	for _, want := range []string{"<Expiration><Days>", "<AbortIncompleteMultipartUpload><DaysAfterInitiation>"} {
		if !bytes.Contains(sent, []byte(want)) {
			problems = append(problems, fmt.Sprintf("the request the SDK sent lacks %s: %s", want, sent))
		}
	}
	return problems
}

// TestS3LifecycleRecipeIsALifecycleConfiguration: the README's lifecycle
// JSON is what put-bucket-lifecycle-configuration takes.
func TestS3LifecycleRecipeIsALifecycleConfiguration(t *testing.T) {
	if p := lifecycleProblems(t.Context(), readmeRecipe(t, "s3-lifecycle")); len(p) > 0 {
		t.Errorf("the README's lifecycle rule:\n%s", strings.Join(p, "\n"))
	}
}

// TestS3LifecycleChecksCatchBrokenRecipes: a misspelt member, a wrong type,
// a status S3 does not know and a rule without expiry are reported.
func TestS3LifecycleChecksCatchBrokenRecipes(t *testing.T) {
	for _, c := range []struct{ old, new string }{
		{`"Expiration"`, `"Expiry"`},
		{`"DaysAfterInitiation"`, `"DaysAfterInit"`},
		{`"Days": 400`, `"Days": "400"`},
		{`"Status": "Enabled"`, `"Status": "On"`},
		{`"Status": "Enabled",`, ``},
		{`"Days": 400`, `"Days": 14`},
	} {
		t.Run(c.new, func(t *testing.T) {
			src := mutate(t, readmeRecipe(t, "s3-lifecycle"), c.old, c.new)
			p := lifecycleProblems(t.Context(), src)
			t.Logf("caught: %s", strings.Join(p, "\n"))
			if len(p) == 0 {
				t.Errorf("the lifecycle rule with %q for %q passes the checks", c.new, c.old)
			}
		})
	}
}

// recipeShells returns the shell each scheduler recipe runs, by the shell
// that runs it: CircleCI and GitHub Actions run steps with bash, the
// CronJob with sh -c, cron with sh.
func recipeShells(t *testing.T) map[string][]string {
	t.Helper()
	shells := map[string][]string{}
	for _, name := range []string{"circleci-archive", "circleci-schedule"} {
		doc, err := yamlValue(readmeRecipe(t, name))
		if err != nil {
			t.Fatal(err)
		}
		shells[name] = append(circleCIShells(doc), orbRecipeCommands(t, name)...)
	}
	doc, err := yamlValue(readmeRecipe(t, "kubernetes-cronjob"))
	if err != nil {
		t.Fatal(err)
	}
	args, _ := at(doc, "spec", "jobTemplate", "spec", "template", "spec", "containers", 0, "args", 0).(string)
	shells["kubernetes-cronjob"] = []string{args}
	if doc, err = yamlValue(readmeRecipe(t, "github-actions")); err != nil {
		t.Fatal(err)
	}
	for _, step := range at(doc, "jobs", "backup", "steps").([]any) {
		if run, ok := at(step, "run").(string); ok {
			shells["github-actions"] = append(shells["github-actions"], run)
		}
	}
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, cron := range regexp.MustCompile("(?s)```cron\n(.*?)```").FindAllSubmatch(data, -1) {
		for _, line := range strings.Split(string(cron[1]), "\n") {
			if f := strings.Fields(line); len(f) > 5 && !strings.HasPrefix(line, "#") {
				shells["cron"] = append(shells["cron"], strings.Join(f[5:], " "))
			}
		}
	}
	return shells
}

// TestRecipeCommandsAreRunByTheREADMETest: every artifact-sync command of
// the scheduler recipes, as the scheduler's YAML parser reads it, is one of
// the commands TestREADMEExamplesRun runs against the fake CircleCI, so a
// recipe cannot name a flag the tool does not have.
func TestRecipeCommandsAreRunByTheREADMETest(t *testing.T) {
	run := readmeCommands(t)
	for name, shells := range recipeShells(t) {
		n := 0
		for _, sh := range shells {
			c := commandOf(sh)
			if c == "" {
				continue
			}
			n++
			if name == "cron" {
				c = regexp.MustCompile(`/\S*/artifact-sync `).ReplaceAllString(c, "artifact-sync ")
			}
			if !slices.ContainsFunc(run, func(r string) bool { return strings.Contains(r, c) }) {
				t.Errorf("the %s recipe's command is not among those TestREADMEExamplesRun runs:\n%s", name, c)
			}
		}
		if n == 0 {
			t.Errorf("the %s recipe runs no artifact-sync command", name)
		}
	}
}

// TestRecipesFillOneArchive: the recipes that write gh/acme/widgets into
// s3://ci-archive (the archive job, the cron backup, the three sharded
// ones) put it under one prefix with one layout, so they share its manifest
// and never lay the same artifact out twice.
func TestRecipesFillOneArchive(t *testing.T) {
	to := regexp.MustCompile(`--to "?(s3://ci-archive/[^" ]*)"?`)
	layout := regexp.MustCompile(`--layout '([^']+)'`)
	vars := strings.NewReplacer("$CIRCLE_PROJECT_USERNAME", "acme", "$CIRCLE_PROJECT_REPONAME", "widgets")
	const widgets = "s3://ci-archive/gh/acme/widgets"
	layouts := map[string][]string{}
	for _, c := range readmeCommands(t) {
		dest := to.FindStringSubmatch(c)
		if dest == nil {
			continue
		}
		prefix := strings.TrimSuffix(vars.Replace(dest[1]), "/")
		if strings.Contains(c, "--org ") || strings.Contains(c, "--projects-from ") {
			prefix += "/gh/acme/widgets" // each project under its own slug
		}
		if prefix != widgets {
			continue
		}
		l := "(the default)"
		if m := layout.FindStringSubmatch(c); m != nil {
			l = m[1]
		}
		layouts[l] = append(layouts[l], c)
	}
	if len(layouts) > 1 {
		t.Errorf("the recipes put %s in %d layouts: %v", widgets, len(layouts), layouts)
	}
	n := 0
	for _, cs := range layouts {
		n += len(cs)
	}
	if n < 5 {
		t.Errorf("%d recipe commands fill %s, want the archive job, cron and the three schedulers: %v", n, widgets, layouts)
	}
}

// TestRecipeShellPassesShellcheck: the shell the recipes run (CircleCI and
// GitHub Actions steps, the CronJob's sh -c, the cron line) has no quoting
// or expansion mistake shellcheck knows of.
func TestRecipeShellPassesShellcheck(t *testing.T) {
	shellcheck, err := exec.LookPath("shellcheck")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("shellcheck is not installed (.ci/run installs it)")
		}
		t.Skip("shellcheck is not installed")
	}
	dialect := map[string]string{"circleci-archive": "bash", "circleci-schedule": "bash", "github-actions": "bash", "kubernetes-cronjob": "sh", "cron": "sh"}
	for name, shells := range recipeShells(t) {
		script := strings.Join(shells, "\n") + "\n"
		cmd := exec.Command(shellcheck, "--shell="+dialect[name], "-")
		cmd.Stdin = strings.NewReader(script)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("shellcheck on the %s recipe: %v\n%s\n%s", name, err, out, script)
		}
	}
}
