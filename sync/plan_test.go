package sync_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
	ccsync "github.com/artifact-sync/artifact-sync/sync"
)

func TestDryRunPrintsThePlanAndTouchesNothing(t *testing.T) {
	f := newFixture(t, circlecitest.Options{})
	dest, dir := localSink(t)
	// Pull half first, so the plan has both "done" and "transfer" lines.
	sel := ccsync.Selection{PipelineNumber: 1, Include: []string{"reports/**"}}
	if _, err := f.pull(t, t.Context(), dest, sel, pullOpts()); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	downloads := f.srv.DownloadTotals().Started

	var out bytes.Buffer
	opts := pullOpts()
	opts.DryRun, opts.Out = true, &out
	sum, err := f.pull(t, t.Context(), dest, ccsync.Selection{PipelineNumber: 1}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if f.srv.DownloadTotals().Started != downloads {
		t.Error("--dry-run downloaded artifacts")
	}
	if after := snapshot(t, dir); after != before {
		t.Errorf("--dry-run changed the destination:\nbefore %s\nafter  %s", before, after)
	}
	var done, transfer int
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		switch {
		case strings.HasPrefix(l, "done "):
			done++
		case strings.HasPrefix(l, "transfer "):
			transfer++
		}
	}
	if done != 2 || transfer != len(f.arts)-2 || sum.Transferred != 0 {
		t.Errorf("plan has %d done and %d transfer lines (summary %+v):\n%s", done, transfer, sum, out.String())
	}
}

// snapshot lists every file under dir with its size, the tool's own folder
// included.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		b.WriteString(rel)
		if !info.IsDir() {
			b.WriteString("=" + info.ModTime().String())
		}
		b.WriteString(";")
		return nil
	})
	return b.String()
}

func TestCollidingLayoutIsRefusedBeforeAnyTransfer(t *testing.T) {
	f := newFixture(t, circlecitest.Options{})
	dest, dir := localSink(t)
	opts := pullOpts()
	var err error
	opts.Layout, err = ccsync.ParseLayout("{job_name}/{path}") // both test nodes have reports/junit.xml
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.pull(t, t.Context(), dest, ccsync.Selection{PipelineNumber: 1}, opts)
	if !errors.Is(err, ccsync.ErrCollision) || !strings.Contains(err.Error(), "test/reports/junit.xml") {
		t.Fatalf("err = %v, want a collision on test/reports/junit.xml", err)
	}
	if n := f.srv.DownloadTotals().Started; n != 0 {
		t.Errorf("%d downloads before the collision was refused", n)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != ".artifact-sync" {
			t.Errorf("%s written despite the refused layout", e.Name())
		}
	}
}

func TestFiltersAndLayout(t *testing.T) {
	f := newFixture(t, circlecitest.Options{})
	dest, dir := localSink(t)
	opts := pullOpts()
	opts.Layout, _ = ccsync.ParseLayout("{branch}/{pipeline_number}/{workflow_name}/{job_name}/{node_index}/{path}")
	sel := ccsync.Selection{
		Branch: "main", JobNames: []string{"pack*"},
		Include: []string{"dist/**"}, Exclude: []string{"**/file-1*.bin"},
	}
	sum, err := f.pull(t, t.Context(), dest, sel, opts)
	if err != nil {
		t.Fatal(err)
	}
	// dist/file-0..11 minus file-1, file-10, file-11.
	if sum.Transferred != 9 {
		t.Errorf("transferred %d, want 9", sum.Transferred)
	}
	if _, err := os.Stat(filepath.Join(dir, "main/1/build/package/0/dist/file-0.bin")); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "main/1/build/package/0/dist/file-10.bin")); err == nil {
		t.Error("--exclude did not drop dist/file-10.bin")
	}
}
