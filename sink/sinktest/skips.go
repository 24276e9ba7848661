package sinktest

import (
	"fmt"
	"os"
	"path"
	"runtime/debug"
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

// Main runs a package's tests, for its TestMain, and then says plainly how
// many S3 tests were skipped and how to run them. A skip alone is silent in
// "go test ./...", which shows only "ok" for a package that passed, so the
// line goes to the terminal (/dev/tty) when there is one.
func Main(m *testing.M) int {
	code := m.Run()
	n := 0
	skipped.Range(func(any, any) bool { n++; return true })
	if n == 0 {
		return code
	}
	pkg := "this package"
	if bi, ok := debug.ReadBuildInfo(); ok {
		pkg = path.Base(strings.TrimSuffix(bi.Path, ".test"))
	}
	tests := "tests"
	if n == 1 {
		tests = "test"
	}
	msg := fmt.Sprintf("%s: %d S3 %s skipped: $%s is not set; bash .ci/run starts an S3 server and runs them (see README, Development)\n", pkg, n, tests, EnvEndpoint)
	if tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0); err == nil {
		fmt.Fprint(tty, msg)
		tty.Close()
	} else {
		fmt.Fprint(os.Stderr, msg)
	}
	return code
}
