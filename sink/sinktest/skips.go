package sinktest

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	stdsync "sync"
	"testing"
)

// skipped holds the top-level tests NewS3Bucket skipped for want of a server.
var skipped stdsync.Map

func noteSkip(t testing.TB) {
	name, _, _ := strings.Cut(t.Name(), "/")
	skipped.Store(name, true)
}

// S3Packages are the packages whose tests use a real S3 server through
// NewS3Bucket (TestS3PackagesAreKnown keeps the list true).
var S3Packages = []string{
	"github.com/artifact-sync/artifact-sync",
	"github.com/artifact-sync/artifact-sync/sink",
	"github.com/artifact-sync/artifact-sync/sync",
}

// Main runs a package's tests, for its TestMain, and then says plainly how
// many S3 tests were skipped and how to run them. A skip alone is silent in
// "go test ./...", which shows only "ok" for a package that passed, so the
// line goes to the terminal (/dev/tty) when there is one.
//
// Every package with S3 tests is its own test binary, so to say it once for
// a whole "go test" the packages of one go command (their parent process)
// add their counts up in a file, and the last of them to finish among those
// that command tests says the total. Where that cannot be worked out (not
// Linux, a command line it cannot read), each package says its own count.
func Main(m *testing.M) int {
	code := m.Run()
	if os.Getenv(EnvEndpoint) != "" {
		return code
	}
	n := 0
	skipped.Range(func(any, any) bool { n++; return true })
	pkg := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		pkg = strings.TrimSuffix(bi.Path, ".test")
	}
	msg, ok := tally(pkg, n)
	if !ok {
		if n == 0 {
			return code
		}
		msg = fmt.Sprintf("%s: %s", path.Base(pkg), skipMessage(n))
	}
	if msg == "" {
		return code
	}
	if tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0); err == nil {
		fmt.Fprintln(tty, msg)
		tty.Close()
	} else {
		fmt.Fprintln(os.Stderr, msg)
	}
	return code
}

func skipMessage(n int) string {
	tests := "tests"
	if n == 1 {
		tests = "test"
	}
	return fmt.Sprintf("%d S3 %s skipped: $%s is not set; bash .ci/run starts an S3 server and runs them (see README, Development)", n, tests, EnvEndpoint)
}

// tally adds this package's count to those of the other packages of the
// same go command and returns the line to print: the total, once every S3
// package that command tests has reported, or "" before that. ok is false
// when the packages of the run cannot be worked out.
func tally(pkg string, n int) (msg string, ok bool) {
	parent := os.Getppid()
	expected, runID, err := s3PackagesOf(parent)
	if err != nil || !slices.Contains(expected, pkg) {
		return "", false
	}
	file := filepath.Join(os.TempDir(), "artifact-sync-s3-skips-"+runID)
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return "", false
	}
	_, err = fmt.Fprintf(f, "%s %d\n", pkg, n)
	f.Close()
	if err != nil {
		return "", false
	}
	counts, err := readCounts(file)
	if err != nil {
		return "", false
	}
	for _, p := range expected {
		if _, ok := counts[p]; !ok {
			return "", true // others still to report
		}
	}
	// Every package has reported: whoever creates the marker says it.
	done, err := os.OpenFile(file+".done", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", errors.Is(err, fs.ErrExist)
	}
	done.Close()
	os.Remove(file)
	os.Remove(file + ".done")
	total := 0
	var parts []string
	for _, p := range expected {
		total += counts[p]
		parts = append(parts, fmt.Sprintf("%s %d", path.Base(p), counts[p]))
	}
	if total == 0 {
		return "", true
	}
	return skipMessage(total) + " (" + strings.Join(parts, ", ") + ")", true
}

func readCounts(file string) (map[string]int, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	counts := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		p, c, ok := strings.Cut(sc.Text(), " ")
		if n, err := strconv.Atoi(c); ok && err == nil {
			counts[p] = n
		}
	}
	return counts, sc.Err()
}

// goTestValueFlags are the flags of "go test" (and of the build and the
// test binary) that take their value as the next argument.
var goTestValueFlags = map[string]bool{
	"run": true, "skip": true, "bench": true, "benchtime": true, "count": true, "cpu": true, "parallel": true,
	"timeout": true, "p": true, "tags": true, "ldflags": true, "gcflags": true, "asmflags": true, "mod": true,
	"modfile": true, "o": true, "exec": true, "coverprofile": true, "covermode": true, "coverpkg": true,
	"cpuprofile": true, "memprofile": true, "blockprofile": true, "mutexprofile": true, "trace": true,
	"outputdir": true, "fuzz": true, "fuzztime": true, "fuzzminimizetime": true, "list": true, "shuffle": true,
	"vet": true, "C": true, "pgo": true, "overlay": true, "toolexec": true, "benchmem": false, "json": false,
}

// s3PackagesOf returns which of S3Packages the go test command with PID
// parent tests, and an ID of that command's run (its PID and start time).
func s3PackagesOf(parent int) ([]string, string, error) {
	proc := "/proc/" + strconv.Itoa(parent)
	raw, err := os.ReadFile(proc + "/cmdline")
	if err != nil {
		return nil, "", err
	}
	stat, err := os.ReadFile(proc + "/stat")
	if err != nil {
		return nil, "", err
	}
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	if len(fields) < 20 {
		return nil, "", errors.New("short /proc stat")
	}
	runID := strconv.Itoa(parent) + "-" + fields[19] // starttime
	cwd, err := os.Readlink(proc + "/cwd")
	if err != nil {
		return nil, "", err
	}
	args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
	i := slices.Index(args, "test")
	if i < 0 || path.Base(args[0]) != "go" {
		return nil, "", errors.New("not run by go test")
	}
	var patterns []string
	for rest := args[i+1:]; len(rest) > 0; rest = rest[1:] {
		a := rest[0]
		if !strings.HasPrefix(a, "-") {
			patterns = append(patterns, a)
			continue
		}
		name := strings.TrimLeft(a, "-")
		name = strings.TrimPrefix(name, "test.")
		if strings.Contains(name, "=") {
			continue
		}
		if goTestValueFlags[name] {
			rest = rest[1:]
			if len(rest) == 0 {
				break
			}
		}
	}
	if len(patterns) == 0 {
		patterns = []string{"."}
	}
	cmd := exec.Command("go", append([]string{"list", "-e", "-f", "{{.ImportPath}}"}, patterns...)...)
	cmd.Dir = cwd
	out, err := cmd.Output()
	if err != nil {
		return nil, "", err
	}
	var expected []string
	for _, p := range strings.Fields(string(out)) {
		if slices.Contains(S3Packages, p) {
			expected = append(expected, p)
		}
	}
	return expected, runID, nil
}
