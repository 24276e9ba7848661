package main

// What a person sees in a terminal, checked in a real one: the tests run the
// binary inside tmux and read the screen with capture-pane while it runs.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
	ccsync "github.com/artifact-sync/artifact-sync/sync"
)

// buildTool returns the artifact-sync binary TestMain built.
func buildTool(t *testing.T) string {
	t.Helper()
	return toolPath
}

// terminal is a tmux session of its own (its own server socket) running one
// shell command in a window of the given size.
type terminal struct {
	t    *testing.T
	sock string
}

func startTerminal(t *testing.T, cols, rows int, env []string, command string) *terminal {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("tmux is not installed; .ci/run installs it")
		}
		t.Skip("tmux is not installed: apt-get install tmux")
	}
	term := &terminal{t: t, sock: fmt.Sprintf("artifact-sync-test-%d-%d", os.Getpid(), time.Now().UnixNano())}
	var envs []string
	for _, e := range env {
		envs = append(envs, ccsync.ShellQuote(e))
	}
	// The command's exit status stays on the screen, and the window stays
	// open to be read.
	cmd := fmt.Sprintf("env -i %s TERM=xterm-256color sh -c %s; echo EXIT=$?; sleep 600",
		strings.Join(envs, " "), ccsync.ShellQuote(command))
	term.tmux("new-session", "-d", "-x", strconv.Itoa(cols), "-y", strconv.Itoa(rows), cmd)
	t.Cleanup(func() { exec.Command("tmux", "-L", term.sock, "kill-server").Run() })
	return term
}

func (term *terminal) tmux(args ...string) string {
	term.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-L", term.sock}, args...)...).CombinedOutput()
	if err != nil {
		term.t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// screen is what the terminal shows now, without trailing blank lines; with
// escapes, colours are kept as escape sequences.
func (term *terminal) screen(escapes bool) string {
	args := []string{"capture-pane", "-p"}
	if escapes {
		args = append(args, "-e")
	}
	return strings.TrimRight(term.tmux(args...), "\n")
}

// watch reads the screen every 30 ms until the command has exited (or the
// time is up) and returns every distinct screen seen, the last one last.
func (term *terminal) watch(limit time.Duration) []string {
	term.t.Helper()
	var screens []string
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		s := term.screen(false)
		if len(screens) == 0 || s != screens[len(screens)-1] {
			screens = append(screens, s)
		}
		if strings.Contains(s, "EXIT=") {
			return screens
		}
		time.Sleep(30 * time.Millisecond)
	}
	term.t.Fatalf("the command did not finish within %s; screen:\n%s", limit, screens[len(screens)-1])
	return nil
}

// progressWorld is one job with many small files and one large one, listed
// last, so that at the end the large file is all that is left: a bar that
// counted files would say 98% while most bytes are still to come.
func progressWorld() (*circlecitest.World, int64) {
	w := circlecitest.NewWorld()
	p := w.AddProject("gh/acme/widgets", "main")
	wf := p.AddPipeline("main").AddWorkflow("build")
	j := wf.AddJob("package", circlecitest.JobOptions{})
	var total int64
	for i := range 60 {
		total += j.AddArtifact(0, fmt.Sprintf("dist/part-%02d.bin", i), 32<<10).Size()
	}
	total += j.AddArtifact(0, "z/large.bin", 12<<20).Size()
	wf.AddJob("deploy", circlecitest.JobOptions{Status: "running"})
	return w, total
}

var (
	pctLine  = regexp.MustCompile(`^\s*(\d+)% `)
	filesIn  = regexp.MustCompile(`(\d+)/61 files`)
	etaIn    = regexp.MustCompile(`ETA \d+(s|m\d\ds)`)
	rateIn   = regexp.MustCompile(`\d(\.\d)? (B|KiB|MiB)/s`)
	bytesIn  = regexp.MustCompile(`(\d+\.\d)/(\d+\.\d) MiB`)
	barChars = regexp.MustCompile(`\[[=> ]{10,}\]`)
)

// statusLine is the last non-empty line of a screen: where the bar is.
func statusLine(screen string) string {
	lines := strings.Split(strings.TrimRight(screen, "\n "), "\n")
	return lines[len(lines)-1]
}

// TestProgressInATerminal runs pull in a 100-column and a 50-column
// terminal and reads the screen at three moments: while the plan is made (a
// spinner says what is being resolved), while the large file is the only
// one left (the percentage and ETA count bytes, files done beside them, a
// recent rate), and at the end (the bar gone, the summary there). Log lines
// (a job passed over, -v's retries) are printed above the bar, never
// through it, as short sentences rather than key=value.
func TestProgressInATerminal(t *testing.T) {
	for _, cols := range []int{100, 50} {
		t.Run(fmt.Sprint(cols, " columns"), func(t *testing.T) {
			w, total := progressWorld()
			srv := circlecitest.Start(t, w, circlecitest.Options{
				Token: testToken, Bandwidth: 4 << 20, Latency: 150 * time.Millisecond,
				// Every 9th download fails once: -v logs the retries mid-run.
				Faults: circlecitest.OnDownloads(circlecitest.FailEvery(9, circlecitest.StatusFault(503, "0"))),
			})
			dest := t.TempDir()
			env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "CIRCLECI_HOST=" + srv.URL, "CIRCLE_TOKEN=" + testToken}
			term := startTerminal(t, cols, 40, env, fmt.Sprintf("%s pull gh/acme/widgets -v -j 4 --to %s", buildTool(t), dest))
			screens := term.watch(90 * time.Second)
			last := screens[len(screens)-1]
			if !strings.Contains(last, "EXIT=0") {
				t.Fatalf("pull did not finish with exit 0:\n%s", last)
			}

			var sawSpinner, sawTail, sawWarning, sawRetry bool
			minTail := 100
			for _, s := range screens {
				line := statusLine(s)
				if len(line) > cols {
					t.Errorf("the status line is %d columns wide in a %d-column terminal: %q", len(line), cols, line)
				}
				if strings.Contains(line, "resolving") {
					sawSpinner = true
				}
				// Moment two: all small files done, the large one coming.
				if m := filesIn.FindStringSubmatch(line); m != nil && m[1] == "60" {
					pm := pctLine.FindStringSubmatch(line)
					if pm == nil {
						t.Errorf("with every size known the line shows no percentage: %q", line)
						continue
					}
					sawTail = true
					pct, _ := strconv.Atoi(pm[1])
					minTail = min(minTail, pct)
					if bm := bytesIn.FindStringSubmatch(line); bm != nil {
						done, _ := strconv.ParseFloat(bm[1], 64)
						all, _ := strconv.ParseFloat(bm[2], 64)
						if d := float64(pct) - 100*done/all; d > 2 || d < -2 {
							t.Errorf("%d%% is not the share of bytes shown: %q", pct, line)
						}
					}
					if !etaIn.MatchString(line) {
						t.Errorf("no ETA: %q", line)
					}
					if cols >= 100 && (!rateIn.MatchString(line) || !barChars.MatchString(line)) {
						t.Errorf("no rate or bar at %d columns: %q", cols, line)
					}
				}
				// Log lines above the bar, never through it.
				sawWarning = sawWarning || strings.Contains(s, "warning: job passed over (")
				sawRetry = sawRetry || strings.Contains(s, "debug: transfer attempt failed (")
				for _, l := range strings.Split(s, "\n") {
					if (strings.Contains(l, "debug:") || strings.Contains(l, "warning:")) && (filesIn.MatchString(l) || strings.Contains(l, "resolving")) {
						t.Errorf("a log line runs through the status line: %q", l)
					}
					if strings.Contains(l, "level=") || strings.Contains(l, "time=") {
						t.Errorf("a key=value log line on a terminal: %q", l)
					}
				}
			}
			if !sawSpinner {
				t.Error("nothing said what was being resolved before the transfers started")
			}
			if !sawTail {
				t.Errorf("no screen showed the large file alone in flight; screens seen: %d", len(screens))
			} else if minTail > 90 {
				t.Errorf("with 60 of 61 files done and the 12 MiB file (of %d bytes in all) just started, the line said %d%%: files, not bytes", total, minTail)
			}
			// Moment three: the summary, and the bar gone.
			if !strings.Contains(last, "61 artifacts: 61 transferred") || filesIn.MatchString(last) || strings.Contains(last, "resolving") {
				t.Errorf("the end of the run:\n%s", last)
			}
			if !sawWarning || !sawRetry {
				t.Errorf("the warning and the retries were not on the screen as sentences:\n%s", last)
			}
		})
	}
}

// TestColourOnlyWhereWanted: warnings are coloured on a terminal, and not
// with NO_COLOR set.
func TestColourOnlyWhereWanted(t *testing.T) {
	w, _ := progressWorld()
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
	for _, noColor := range []bool{false, true} {
		env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "CIRCLECI_HOST=" + srv.URL, "CIRCLE_TOKEN=" + testToken}
		if noColor {
			env = append(env, "NO_COLOR=1")
		}
		term := startTerminal(t, 100, 10, env, buildTool(t)+" list gh/acme/widgets --job-name deploy")
		term.watch(30 * time.Second)
		s := term.screen(true)
		warning := regexp.MustCompile(`\x1b\[[0-9;]*m\s*warning:`)
		if got := warning.MatchString(s); got == noColor {
			t.Errorf("NO_COLOR set: %v; the warning is coloured: %v:\n%q", noColor, got, s)
		}
	}
}

// TestNoEscapeCodesWhenPiped: with stderr not a terminal, progress and log
// lines are plain key=value lines (or JSON with --log-format json).
func TestNoEscapeCodesWhenPiped(t *testing.T) {
	bin := buildTool(t)
	w, _ := progressWorld()
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
	for _, format := range []string{"", "json", "text"} {
		args := []string{"pull", "gh/acme/widgets", "--to", t.TempDir()}
		if format != "" {
			args = append(args, "--log-format", format)
		}
		cmd := exec.Command(bin, args...)
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
		if !strings.Contains(stdout.String(), "61 artifacts: 61 transferred") {
			t.Errorf("summary missing from stdout: %q", stdout.String())
		}
		want := map[string]string{"": `level=WARN msg="job passed over"`, "json": `{"time":`, "text": "warning: job passed over ("}[format]
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("--log-format %q: stderr does not have %q:\n%s", format, want, stderr.String())
		}
	}
}

// TestSkippedS3TestsAreCounted: "go test" without an S3 server says once,
// in the terminal it runs in, how many S3 tests it skipped and how to run
// them (a skip alone is silent: go test shows "ok" for the package), even
// when several packages skipped some.
func TestSkippedS3TestsAreCounted(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the sink and sync tests")
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	if out, err := exec.Command("go", "env", "GOCACHE", "GOPATH").Output(); err == nil {
		f := strings.Fields(string(out))
		env = append(env, "GOCACHE="+f[0], "GOPATH="+f[1])
	}
	wd, _ := os.Getwd()
	line := regexp.MustCompile(`(\d+) S3 tests skipped: \$ARTIFACT_SYNC_TEST_S3_ENDPOINT is not set; bash \.ci/run starts an S3 server and runs them \(see README, Development\) \((.*)\)`)
	for _, tc := range []struct{ pkgs, want string }{
		{"./sink", `^sink \d+$`},
		{"./sink ./sync", `^sink \d+, sync \d+$`},
	} {
		term := startTerminal(t, 250, 20, env, "cd "+ccsync.ShellQuote(wd)+" && go test -count=1 -run 'TestS3|TestPullToS3' "+tc.pkgs)
		last := term.watch(5 * time.Minute)
		screen := last[len(last)-1]
		found := line.FindAllStringSubmatch(screen, -1)
		if len(found) != 1 || !regexp.MustCompile(tc.want).MatchString(found[0][2]) || strings.Count(screen, "S3 test") != 1 {
			t.Errorf("go test %s: want one line with the total and each package's count (%s):\n%s", tc.pkgs, tc.want, screen)
		}
	}
}

// TestProgressShowsHowFarFromTheStart: sizes become known one response at
// a time, so while most files have not started the total is a guess from
// the sizes known; the line still shows the share done, the total marked
// "~" and an ETA within the first files, not only once every file has
// started.
func TestProgressShowsHowFarFromTheStart(t *testing.T) {
	const n, size = 40, 256 << 10
	w, _ := smallWorld(n, size)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken, Bandwidth: 256 << 10})
	dest := t.TempDir()
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "CIRCLECI_HOST=" + srv.URL, "CIRCLE_TOKEN=" + testToken}
	term := startTerminal(t, 100, 20, env, fmt.Sprintf("%s pull %s -j 2 --to %s", buildTool(t), slugArg, dest))

	early := regexp.MustCompile(`^\s*(\d+)% .*/~(\d+\.\d) MiB (\d+)/40 files .*ETA (\d+s|\d+m\d\ds)`)
	filesDone := regexp.MustCompile(`(\d+)/40 files`)
	var lines []string
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(30 * time.Millisecond) {
		line := statusLine(term.screen(false))
		if len(lines) == 0 || line != lines[len(lines)-1] {
			lines = append(lines, line)
		}
		if m := early.FindStringSubmatch(line); m != nil {
			if total, _ := strconv.ParseFloat(m[2], 64); total < 8 || total > 12 {
				t.Errorf("the guessed total is %s MiB, the run is 10 MiB: %q", m[2], line)
			}
			t.Logf("with %s of 40 files done: %q", m[3], line)
			return
		}
		if m := filesDone.FindStringSubmatch(line); m != nil && atoi(m[1]) >= 8 || strings.Contains(line, "EXIT=") {
			break
		}
	}
	t.Fatalf("within the first 8 of 40 files no status line showed a share, a total marked ~ and an ETA; lines seen:\n%s", strings.Join(lines, "\n"))
}

// TestProgressLinesWhenPiped: with stderr not a terminal, a progress line
// every 5 seconds says the share done, the bytes done of the total (marked
// ~ while it is a guess), the recent rate and the ETA.
func TestProgressLinesWhenPiped(t *testing.T) {
	w, _ := smallWorld(40, 256<<10)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken, Bandwidth: 256 << 10})
	d := localDest(t, srv)
	p := startTool(t, d.env, d.pull("-j", "2")...)
	start := time.Now()
	if !p.waitUntil(func() bool { return time.Since(start) > 6*time.Second }) {
		t.Fatalf("the run ended before a progress line was due:\n%s", p.stderr.String())
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	r := p.wait(30 * time.Second)
	wantCode(t, r, 130)
	line := regexp.MustCompile(`(?m)^.*msg=progress.*$`).FindString(r.stderr)
	want := regexp.MustCompile(`msg=progress percent=(\d+) done="([\d.]+) MiB" total="~([\d.]+) MiB" rate="([\d.]+) KiB/s" eta=(\d+)s files_done=\d+ files=40$`)
	m := want.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("want a progress line with the share, the bytes done of a guessed total, the rate and the ETA; stderr:\n%s", r.stderr)
	}
	pct, done, total, rate, eta := atoi(m[1]), mib(m[2]), mib(m[3]), atoi(strings.Split(m[4], ".")[0]), atoi(m[5])
	// 2 streams at 256 KiB/s: 512 KiB/s, about 2.5 MiB in 5 s of 10 MiB.
	if total < 8<<20 || total > 12<<20 || rate < 400 || rate > 600 || pct < 15 || pct > 35 || done < 2<<20 || eta < 10 || eta > 20 {
		t.Errorf("after 5 s of 10 MiB at 512 KiB/s: %q", line)
	}
	t.Logf("%s", line)
}
