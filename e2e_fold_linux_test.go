package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
	"github.com/artifact-sync/artifact-sync/sink"
)

// TestPullToACaseInsensitiveFileSystem runs the binary on a destination
// that ignores case and Unicode normalisation, as macOS and Windows
// destinations do (foldFS, a FUSE file system): "Report.html" and
// "report.html", and "café.txt" composed and decomposed, would each be
// one file, both recorded as done and one of them lost. Each of those
// four fails, naming the other; everything else is written and recorded,
// a rerun finds it done, and verify finds the mirror intact.
func TestPullToACaseInsensitiveFileSystem(t *testing.T) {
	mnt, backing := mountFoldFS(t)
	// The file system under the test folds as it should.
	if err := os.WriteFile(filepath.Join(mnt, "Probe-\u00c9"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "probe-e\u0301")); err != nil {
		t.Fatalf("foldFS does not fold names: %v", err)
	}
	os.Remove(filepath.Join(mnt, "Probe-\u00c9"))

	w := circlecitest.NewWorld()
	job := w.AddProject(slugArg, "main").AddPipeline("main").AddWorkflow("build").AddJob("docs", circlecitest.JobOptions{})
	nfc, nfd := "caf\u00e9.txt", "cafe\u0301.txt"
	clashing := map[string]string{"Report.html": "report.html", "report.html": "Report.html", nfc: nfd, nfd: nfc}
	var kept []*circlecitest.Artifact
	for _, path := range []string{"Report.html", "report.html", nfc, nfd, "other.txt", "Docs/a.html", "docs/b.html"} {
		a := job.AddArtifact(0, path, 5000)
		if clashing[path] == "" {
			kept = append(kept, a)
		}
	}
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
	env := toolEnv(t, srv)
	to := filepath.Join(mnt, "mirror")
	pull := []string{"pull", slugArg, "--to", to, "--json"}

	r := runTool(t, env, time.Minute, pull...)
	wantCode(t, r, 1)
	sum := foldSummary(t, r)
	if sum.Transferred != 3 || sum.Failed != 4 {
		t.Errorf("first pull: %d transferred, %d failed; want 3 and 4\n%s", sum.Transferred, sum.Failed, r.stdout)
	}
	for _, f := range sum.Failures {
		other := clashing[f.Path]
		if other == "" || !strings.Contains(f.Error, `"1/0/`+f.Path+`"`) || !strings.Contains(f.Error, `"1/0/`+other+`"`) || !strings.Contains(f.Error, to) {
			t.Errorf("failure of %q: %q; want it to name 1/0/%s, 1/0/%s and the destination", f.Path, f.Error, f.Path, other)
		}
	}
	// Nothing was written where two artifacts would be one file.
	for _, name := range []string{"report.html", foldedName(nfc)} {
		if _, err := os.Lstat(filepath.Join(backing, "mirror", "1", "0", name)); err == nil {
			t.Errorf("%s was written despite the clash", name)
		}
	}
	checkMirror(t, to, kept)

	// A dry run shows the same refusals and leaves nothing behind.
	r = runTool(t, env, time.Minute, "pull", slugArg, "--to", to, "--dry-run")
	wantCode(t, r, 1)
	if n := strings.Count(r.stdout, "\nrefuse "); n != 4 {
		t.Errorf("dry run: %d refuse lines, want 4:\n%s", n, r.stdout)
	}
	if tmp, _ := os.ReadDir(filepath.Join(to, ".artifact-sync", "tmp")); len(tmp) != 0 {
		t.Errorf("the dry run left %d files in .artifact-sync/tmp", len(tmp))
	}

	r = runTool(t, env, time.Minute, pull...)
	wantCode(t, r, 1)
	if sum := foldSummary(t, r); sum.Skipped != 3 || sum.Transferred != 0 || sum.Failed != 4 {
		t.Errorf("rerun: %d skipped, %d transferred, %d failed; want 3, 0 and 4\n%s", sum.Skipped, sum.Transferred, sum.Failed, r.stdout)
	}
	wantVerified(t, dest{to: to, env: env}, 3)
}

type foldPullSummary struct {
	Transferred, Skipped, Failed int
	Failures                     []struct {
		Path  string `json:"path"`
		Error string `json:"error"`
	}
}

func foldSummary(t *testing.T, r e2eResult) foldPullSummary {
	t.Helper()
	var sum foldPullSummary
	if err := json.Unmarshal([]byte(lastLine(r.stdout)), &sum); err != nil {
		t.Fatalf("--json summary: %v\n%s", err, r.stdout)
	}
	return sum
}

// checkMirror wants each of arts at its default key under dir, byte for
// byte.
func checkMirror(t *testing.T, dir string, arts []*circlecitest.Artifact) {
	t.Helper()
	for _, a := range arts {
		key := filepath.Join(dir, "1", "0", filepath.FromSlash(a.Path()))
		got, err := os.ReadFile(key)
		if err != nil {
			t.Errorf("%s: %v", a.Path(), err)
			continue
		}
		var want bytes.Buffer
		want.ReadFrom(a.Content())
		if !bytes.Equal(got, want.Bytes()) {
			t.Errorf("%s is not what the server sent", a.Path())
		}
	}
}

// TestLocalProbeFindsFoldingFileSystem: the local sink's probe tells a
// destination that folds case and normalisation (foldFS) from one that
// does not (the backing folder itself).
func TestLocalProbeFindsFoldingFileSystem(t *testing.T) {
	mnt, backing := mountFoldFS(t)
	for dir, want := range map[string]sink.NameFolding{
		mnt:     {Case: sink.FoldUnicode, Normalization: true},
		backing: {},
	} {
		l, err := sink.NewLocal(dir)
		if err != nil {
			t.Fatal(err)
		}
		got, err := l.NameFolding(t.Context())
		if err != nil || got != want {
			t.Errorf("%s: NameFolding = %v, %v; want %v", dir, got, err, want)
		}
		if left, _ := os.ReadDir(filepath.Join(dir, ".artifact-sync", "tmp")); len(left) != 0 {
			t.Errorf("%s: the probe left %d files in .artifact-sync/tmp", dir, len(left))
		}
	}
}
