package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
	"github.com/artifact-sync/artifact-sync/sink/sinktest"
)

// readmeCommands extracts every artifact-sync command of README.md's sh,
// cron and yaml examples, continuation lines joined.
func readmeCommands(t *testing.T) []string {
	t.Helper()
	f, err := os.Open("README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cmds []string
	var block string // language of the fenced block we are in
	var cur strings.Builder
	folded := false // inside a YAML folded scalar that runs artifact-sync
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "```") {
			block = strings.TrimPrefix(line, "```")
			if block == "" && cur.Len() > 0 {
				cmds = append(cmds, cur.String())
				cur.Reset()
			}
			folded = false
			continue
		}
		trimmed := strings.TrimSpace(line)
		switch block {
		case "sh":
			if cur.Len() > 0 {
				cur.WriteString(" " + strings.TrimSuffix(trimmed, "\\"))
				if !strings.HasSuffix(trimmed, "\\") {
					cmds = append(cmds, cur.String())
					cur.Reset()
				}
				continue
			}
			if strings.HasPrefix(trimmed, "artifact-sync ") {
				if strings.HasSuffix(trimmed, "\\") {
					cur.WriteString(strings.TrimSuffix(trimmed, "\\"))
					continue
				}
				cmds = append(cmds, trimmed)
			}
		case "cron":
			if fields := strings.Fields(trimmed); len(fields) > 5 && !strings.HasPrefix(trimmed, "#") {
				cmds = append(cmds, strings.Join(fields[5:], " "))
			}
		case "yaml":
			switch {
			case strings.HasPrefix(trimmed, "artifact-sync "):
				folded = true
				cur.WriteString(trimmed)
			case folded && strings.HasPrefix(line, "          "):
				cur.WriteString(" " + trimmed)
			case folded:
				cmds = append(cmds, cur.String())
				cur.Reset()
				folded = false
			}
		}
	}
	// A recipe that uses the orb has no command of its own: the one the
	// orb's pull script runs for it stands in.
	for _, recipe := range []string{"circleci-archive", "circleci-schedule"} {
		cmds = append(cmds, orbRecipeCommands(t, recipe)...)
	}
	return cmds
}

// readmeWorld has what the README's examples name: gh/acme/widgets with a
// main branch, two pipelines of the last hours (inside every --since
// window), jobs 12 and 13 with reports, jobs named test*, and a rerun of
// the newest workflow, whose jobs have the original's names.
func readmeWorld() (*circlecitest.World, *circlecitest.Workflow) {
	w := circlecitest.NewWorld()
	w.SetClock(time.Now().Add(-3 * time.Hour))
	p := w.AddProject("gh/acme/widgets", "main")
	var last *circlecitest.Workflow
	for range 2 {
		wf := p.AddPipeline("main").AddWorkflow("build")
		for i := range 7 {
			j := wf.AddJob(fmt.Sprintf("test-%d", i), circlecitest.JobOptions{Parallelism: 2})
			j.AddArtifact(0, "reports/junit.xml", 200)
			j.AddArtifact(1, "reports/junit.xml", 300)
			j.AddArtifact(0, "dist/app.tgz", 4096)
		}
		last = wf
	}
	last.Rerun().AddJob("test-0", circlecitest.JobOptions{}).AddArtifact(0, "reports/junit.xml", 250)
	return w, last
}

// TestREADMEExamplesRun runs the README's list, pull and verify examples
// against the fake CircleCI and the real S3 server, so the manual cannot
// drift from the tool.
func TestREADMEExamplesRun(t *testing.T) {
	s3 := sinktest.NewS3Bucket(t)
	bin := buildTool(t)
	w, wf := readmeWorld()
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken, Redirect: true})
	work := t.TempDir()
	os.Symlink(bin, filepath.Join(filepath.Dir(bin), "artifact-sync"))

	cmds := readmeCommands(t)
	var seen = map[string]int{}
	endpoint := regexp.MustCompile(`--s3-endpoint \S+`)
	region := regexp.MustCompile(`--s3-region \S+`)
	fullPath := regexp.MustCompile(`/\S*/artifact-sync `)
	for _, c := range cmds {
		verb := strings.Fields(c)[1]
		seen[verb]++
		c = strings.ReplaceAll(c, "s3://ci-archive/", "s3://"+s3.Bucket+"/")
		c = strings.ReplaceAll(c, "CIRCLE_TOKEN=... ", "")
		c = strings.ReplaceAll(c, "AWS_PROFILE=backup ", "")
		c = fullPath.ReplaceAllString(c, "artifact-sync ") // cron's full path to the binary
		c = endpoint.ReplaceAllString(c, "--s3-endpoint "+s3.Endpoint)
		c = region.ReplaceAllString(c, "--s3-region "+s3.Region)
		if strings.Contains(c, "s3://") {
			c += " --s3-path-style"
			if !strings.Contains(c, "--s3-endpoint") {
				c += " --s3-endpoint " + s3.Endpoint + " --s3-region " + s3.Region
			}
		}
		t.Run(c, func(t *testing.T) {
			cmd := exec.Command("sh", "-c", c)
			cmd.Dir = work
			cmd.Env = append(os.Environ(),
				"PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH"),
				"CIRCLECI_HOST="+srv.URL, "CIRCLE_TOKEN="+testToken,
				"CIRCLE_WORKFLOW_ID="+wf.ID(), "CIRCLE_WORKFLOW_JOB_ID="+wf.Jobs()[0].ID(), "CIRCLE_PROJECT_USERNAME=acme", "CIRCLE_PROJECT_REPONAME=widgets",
				"AWS_ACCESS_KEY_ID="+s3.AccessKey, "AWS_SECRET_ACCESS_KEY="+s3.SecretKey,
				// The sharded recipes' index variables: CircleCI's parallelism, an Indexed Job, a matrix.
				"CIRCLE_NODE_INDEX=0", "CIRCLE_NODE_TOTAL=1", "JOB_COMPLETION_INDEX=0", "SHARD=0",
			)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if strings.Contains(string(out), testToken) {
				t.Errorf("the token appears in the output")
			}
		})
	}
	for _, verb := range []string{"list", "pull", "verify"} {
		if seen[verb] < 2 {
			t.Errorf("the README has %d %s examples; the test expects at least 2", seen[verb], verb)
		}
	}
	if leaks := srv.LeakedCredentials(); len(leaks) > 0 {
		t.Errorf("credentials reached the storage host: %+v", leaks)
	}
}

// TestREADMESaysWhatANewUserNeeds: the manual covers what a first day
// needs, and its recipes do not contradict each other.
func TestREADMESaysWhatANewUserNeeds(t *testing.T) {
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	for _, s := range []string{
		"--multi-thread-streams", "--multi-thread-cutoff", "~/.circleci/cli.yml",
		"completion bash", "completion zsh", "completion fish",
		"kill $fake", "go mod tidy -diff", "fuzzed inputs", "smoke", "versitygw", "first run",
		"--log-format", "NO_COLOR", "--version",
	} {
		if !strings.Contains(readme, s) {
			t.Errorf("the README does not mention %s", s)
		}
	}
	// cron's PATH lacks ~/go/bin: the cron line names the binary by its path.
	cron := regexp.MustCompile("(?s)```cron\n(.*?)```").FindStringSubmatch(readme)
	if cron == nil || !regexp.MustCompile(`\s/\S+/artifact-sync pull`).MatchString(cron[1]) {
		t.Errorf("the cron recipe does not give the binary's full path:\n%v", cron)
	}
	// Recipes that fill one bucket prefix use one layout.
	layouts := map[string]string{}
	prefix := regexp.MustCompile(`--to "?s3://ci-archive/(\$CIRCLE_PROJECT_REPONAME|widgets)"?`)
	layout := regexp.MustCompile(`--layout '([^']+)'`)
	for _, c := range readmeCommands(t) {
		p, l := prefix.FindStringSubmatch(c), layout.FindStringSubmatch(c)
		if p == nil || l == nil {
			continue
		}
		key := strings.ReplaceAll(p[1], "$CIRCLE_PROJECT_REPONAME", "widgets")
		if prev, ok := layouts[key]; ok && prev != l[1] {
			t.Errorf("two recipes put s3://ci-archive/%s in different layouts: %s and %s", key, prev, l[1])
		}
		layouts[key] = l[1]
	}
}

// TestFakeHelpShowsTheCommandMode: the README's first command runs the
// tool under the fake CircleCI with "-- COMMAND"; the fake's -h says that
// it can, with the same example.
func TestFakeHelpShowsTheCommandMode(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "fakecircleci")
	if out, err := exec.Command("go", "build", "-o", bin, "./circleci/circlecitest/fakecircleci").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, _ := exec.Command(bin, "-h").CombinedOutput()
	for _, want := range []string{"-- COMMAND", "go run ./circleci/circlecitest/fakecircleci -- go run . pull gh/acme/widgets --to ./artifacts", "-latency"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("fakecircleci -h does not say %q:\n%s", want, out)
		}
	}
}
