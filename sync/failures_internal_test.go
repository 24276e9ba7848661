package sync

import (
	"fmt"
	"io/fs"
	"strings"
	"syscall"
	"testing"

	"github.com/artifact-sync/artifact-sync/circleci"
)

// The cause of a failure leaves out what names its artifact, so that
// failures of one cause group whatever artifact they struck, and keeps
// what tells causes apart.
func TestCauseLeavesOutTheArtifact(t *testing.T) {
	refused := func(path string, status int) error {
		return fmt.Errorf("after %d attempts: %w", 2, &refusedError{&circleci.Error{StatusCode: status, Method: "GET", Path: path}})
	}
	notDir := func(path string) error {
		return fmt.Errorf("resume: %w", &fs.PathError{Op: "open", Path: path, Err: syscall.ENOTDIR})
	}
	for _, tc := range []struct {
		a, b error
		same bool
	}{
		{refused("/1/0/a.txt", 404), refused("/2/0/b.txt", 404), true},
		{refused("/1/0/a.txt", 404), refused("/1/0/a.txt", 403), false},
		{notDir("/d/1/a"), notDir("/d/2/b"), true},
		{fmt.Errorf("refused: %w", checkKey(".artifact-sync/a")), fmt.Errorf("refused: %w", checkKey(".ARTIFACT-SYNC/b")), true},
	} {
		ca, cb := causeOf(tc.a), causeOf(tc.b)
		if (ca == cb) != tc.same {
			t.Errorf("causes %q and %q: same %v, want %v", ca, cb, ca == cb, tc.same)
		}
		for _, s := range []string{"a.txt", "b.txt", "/d/"} {
			if tc.same && (strings.Contains(ca, s) || strings.Contains(cb, s)) {
				t.Errorf("cause %q or %q names the artifact (%s)", ca, cb, s)
			}
		}
	}
}

// Groups come most frequent first, then by cause, and each lists its
// failures in order, whatever order they failed in.
func TestFailureGroupsAreStable(t *testing.T) {
	fails := []Failure{
		{JobNumber: 2, Path: "z", Error: "e1", Cause: "b"},
		{JobNumber: 1, Path: "y", Error: "e2", Cause: "a"},
		{JobNumber: 1, Path: "x", Error: "e3", Cause: "b"},
		{JobNumber: 3, Path: "w", Error: "e4", Cause: "c"},
	}
	g := groupFailures(fails)
	if len(g) != 3 || g[0].Cause != "b" || g[0].Count != 2 || g[1].Cause != "a" || g[2].Cause != "c" {
		t.Fatalf("groups %+v: want b (2), a, c", g)
	}
	if g[0].failures[0].Path != "x" || g[0].failures[1].Path != "z" {
		t.Errorf("group b lists %+v, want job 1 before job 2", g[0].failures)
	}
}
