package sync_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
	"github.com/artifact-sync/artifact-sync/sink"
	ccsync "github.com/artifact-sync/artifact-sync/sync"
)

// A symbolic link inside DEST is never followed: the artifacts whose way
// goes through it fail with a message that says so, nothing is written
// where it points, and every other artifact is transferred. Links planted
// in .artifact-sync/ (the lock, a partial) are not followed either.
func TestSymlinksInsideDestAreNotFollowed(t *testing.T) {
	f := newFixture(t, circlecitest.Options{})
	dest, dir := localSink(t)
	elsewhere := t.TempDir()
	victim := filepath.Join(elsewhere, "victim")
	if err := os.WriteFile(victim, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The package job's folder is a link out of DEST; a partial of one of
	// the test job's files is a link to the victim.
	pkg := f.arts[2].Job()
	if err := os.Symlink(elsewhere, filepath.Join(dir, strconv.FormatInt(pkg.Number(), 10))); err != nil {
		t.Fatal(err)
	}
	slot := filepath.Join(dir, ".artifact-sync", "partial", sha([]byte(defaultKey(f.arts[0]))))
	os.MkdirAll(filepath.Dir(slot), 0o755)
	if err := os.Symlink(victim, slot); err != nil {
		t.Fatal(err)
	}
	meta := `{"key":"` + defaultKey(f.arts[0]) + `","validator":"` + f.arts[0].ETag() + `","total":3000,"spans":[{"From":0,"To":7}]}`
	os.WriteFile(slot+".json", []byte(meta), 0o644)
	sum, err := f.pull(t, t.Context(), dest, ccsync.Selection{PipelineNumber: 1}, pullOpts())
	if err != nil {
		t.Fatalf("a link in DEST stopped the run: %v", err)
	}
	var failedPkg int
	for _, fl := range sum.Failures {
		if fl.JobNumber != pkg.Number() || !strings.Contains(fl.Error, "symbolic link") {
			t.Errorf("unexpected failure %+v", fl)
		}
		failedPkg++
	}
	if failedPkg != len(f.arts)-2 || sum.Transferred != 2 {
		t.Errorf("summary %+v: want the 2 test-job artifacts transferred and the %d package ones failed", sum, len(f.arts)-2)
	}
	if entries, _ := os.ReadDir(elsewhere); len(entries) != 1 {
		t.Errorf("%d entries where the link points, want only the victim: the link was followed", len(entries))
	}
	if b, _ := os.ReadFile(victim); !bytes.Equal(b, []byte("keep me")) {
		t.Errorf("the victim was overwritten: %q", b)
	}
}

// A lock file that is a link is refused, and its target is left alone.
func TestSymlinkedLockIsRefused(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("keep me"), 0o644)
	os.MkdirAll(filepath.Join(dir, ".artifact-sync"), 0o755)
	if err := os.Symlink(victim, filepath.Join(dir, ".artifact-sync", "lock")); err != nil {
		t.Fatal(err)
	}
	l, err := sink.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	if lease, err := l.Lock(t.Context(), sink.DefaultLockName, "me", 0); err == nil {
		lease.Release(t.Context())
		t.Fatal("a symlinked lock file was used")
	}
	if b, _ := os.ReadFile(victim); !bytes.Equal(b, []byte("keep me")) {
		t.Errorf("the lock's link target was written: %q", b)
	}
}

// Two artifacts whose keys need one name as a file and as a folder
// ("report" and "report/index.html") fail, both named, before anything is
// transferred; the others go on, and a rerun says the same (exit 1, not a
// destination error).
func TestFileFolderClashFailsOnlyThoseTwo(t *testing.T) {
	w := circlecitest.NewWorld()
	j := w.AddProject("gh/acme/widgets", "main").AddPipeline("main").AddWorkflow("build").AddJob("docs", circlecitest.JobOptions{})
	file := j.AddArtifact(0, "report", 10)
	inside := j.AddArtifact(0, "report/index.html", 20)
	var others []*circlecitest.Artifact
	for i := range 5 {
		others = append(others, j.AddArtifact(0, "other-"+strconv.Itoa(i), 30))
	}
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token})
	client := newClient(t, srv.URL)
	dest, dir := localSink(t)
	for run := range 2 {
		sum, err := ccsync.Pull(t.Context(), client, client, slug, &ccsync.Selection{}, dest, pullOpts())
		if err != nil {
			t.Fatalf("run %d: the clash stopped the run: %v", run, err)
		}
		if sum.Failed != 2 || len(sum.Failures) != 2 {
			t.Fatalf("run %d: %+v; want the two clashing artifacts failed", run, sum)
		}
		for _, fl := range sum.Failures {
			if !strings.Contains(fl.Error, file.Path()) || !strings.Contains(fl.Error, inside.Path()) {
				t.Errorf("run %d: failure %q does not name both artifacts", run, fl.Error)
			}
		}
	}
	checkTree(t, dir, others)
}
