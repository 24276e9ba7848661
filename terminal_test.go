package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
)

// buildTool returns the artifact-sync binary TestMain built.
func buildTool(t *testing.T) string {
	t.Helper()
	return toolPath
}

func progressWorld() *circlecitest.World {
	w := circlecitest.NewWorld()
	p := w.AddProject("gh/acme/widgets", "main")
	j := p.AddPipeline("main").AddWorkflow("build").AddJob("package", circlecitest.JobOptions{})
	for i := range 40 {
		j.AddArtifact(0, fmt.Sprintf("dist/part-%02d.bin", i), 256<<10)
	}
	return w
}

var barLine = regexp.MustCompile(`\d+% \[[=> ]+\] \(\d+/40\)`)

// TestProgressBarInATerminal runs pull in a real terminal (tmux) and reads
// the screen while it runs: the bar redraws in place on one line, shows
// bytes, rate, files and an ETA, and gives way to the summary at the end.
func TestProgressBarInATerminal(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("tmux is not installed; .ci/run installs it")
		}
		t.Skip("tmux is not installed: apt-get install tmux")
	}
	bin := buildTool(t)
	srv := circlecitest.Start(t, progressWorld(), circlecitest.Options{Token: testToken, Bandwidth: 2 << 20})
	dest := t.TempDir()
	sock := "artifact-sync-test-" + fmt.Sprint(os.Getpid())
	tmux := func(args ...string) string {
		out, err := exec.Command("tmux", append([]string{"-L", sock}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	cmd := fmt.Sprintf("env CIRCLECI_HOST=%s CIRCLE_TOKEN=%s %s pull gh/acme/widgets -j 2 --to %s; echo EXIT=$?; sleep 60",
		srv.URL, testToken, bin, dest)
	tmux("new-session", "-d", "-x", "110", "-y", "12", cmd)
	t.Cleanup(func() { exec.Command("tmux", "-L", sock, "kill-server").Run() })

	var sawBar bool
	var screen string
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		screen = tmux("capture-pane", "-p")
		bars := 0
		for _, l := range strings.Split(screen, "\n") {
			if barLine.MatchString(l) {
				bars++
				sawBar = true
				if !strings.Contains(l, "/s") || !strings.Contains(l, "iB") || !regexp.MustCompile(`\[\d+s:\d+s\]`).MatchString(l) {
					t.Errorf("bar line lacks bytes, rate or elapsed:ETA: %q", l)
				}
			}
		}
		if bars > 1 {
			t.Fatalf("the bar did not redraw in place; the screen has %d bar lines:\n%s", bars, screen)
		}
		if strings.Contains(screen, "EXIT=") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(screen, "EXIT=0") {
		t.Fatalf("pull did not finish with exit 0:\n%s", screen)
	}
	if !sawBar {
		t.Errorf("no progress bar was seen while pulling 10 MiB at 2 MiB/s")
	}
	if barLine.MatchString(screen) {
		t.Errorf("the bar is still on the screen after the run:\n%s", screen)
	}
	if !strings.Contains(screen, "40 artifacts: 40 transferred") {
		t.Errorf("no summary on the screen:\n%s", screen)
	}
}

// TestNoEscapeCodesWhenPiped: with stderr not a terminal, progress is plain
// log lines.
func TestNoEscapeCodesWhenPiped(t *testing.T) {
	bin := buildTool(t)
	srv := circlecitest.Start(t, progressWorld(), circlecitest.Options{Token: testToken})
	cmd := exec.Command(bin, "pull", "gh/acme/widgets", "--to", t.TempDir())
	cmd.Env = append(os.Environ(), "CIRCLECI_HOST="+srv.URL, "CIRCLE_TOKEN="+testToken)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	for name, b := range map[string][]byte{"stdout": stdout.Bytes(), "stderr": stderr.Bytes()} {
		if bytes.ContainsAny(b, "\x1b\r") {
			t.Errorf("%s has escape codes or carriage returns: %q", name, b)
		}
	}
	if !strings.Contains(stdout.String(), "40 artifacts: 40 transferred") {
		t.Errorf("summary missing from stdout: %q", stdout.String())
	}
}
