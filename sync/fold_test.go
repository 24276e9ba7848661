package sync_test

import (
	"bytes"
	"context"
	"io"
	"iter"
	"strings"
	stdsync "sync"
	"testing"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
	"github.com/artifact-sync/artifact-sync/sink"
	ccsync "github.com/artifact-sync/artifact-sync/sync"
)

// foldingSink is a destination that takes keys for one as a file system
// that ignores case or normalisation does (APFS, NTFS): a key is written at
// the spelling its file, and each of its folders, first got, and List
// yields those spellings.
type foldingSink struct {
	mem *sink.Memory
	how sink.NameFolding

	mu      stdsync.Mutex
	spelled map[string]string // folded path of each file and folder -> its spelling
}

func newFoldingSink(how sink.NameFolding) *foldingSink {
	return &foldingSink{mem: sink.NewMemory(), how: how, spelled: map[string]string{}}
}

// resolve is the spelling key is stored under; put records new spellings.
func (s *foldingSink) resolve(key string, put bool) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	elems := strings.Split(key, "/")
	for i := range elems {
		path := strings.Join(elems[:i+1], "/")
		if spelled, ok := s.spelled[s.how.Key(path)]; ok {
			elems = append(strings.Split(spelled, "/"), elems[i+1:]...)
		} else if put {
			s.spelled[s.how.Key(path)] = path
		}
	}
	return strings.Join(elems, "/")
}

func (s *foldingSink) NameFolding(context.Context) (sink.NameFolding, error) { return s.how, nil }
func (s *foldingSink) String() string                                        { return "folding" }

func (s *foldingSink) Put(ctx context.Context, key string, r io.Reader, opts sink.PutOptions) (sink.Info, error) {
	return s.mem.Put(ctx, s.resolve(key, true), r, opts)
}

func (s *foldingSink) Stat(ctx context.Context, key string) (sink.Info, error) {
	return s.mem.Stat(ctx, s.resolve(key, false))
}

func (s *foldingSink) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	return s.mem.Open(ctx, s.resolve(key, false))
}

func (s *foldingSink) Delete(ctx context.Context, key string) error {
	return s.mem.Delete(ctx, s.resolve(key, false))
}

func (s *foldingSink) List(ctx context.Context, prefix string) iter.Seq2[sink.Info, error] {
	return s.mem.List(ctx, prefix)
}

// foldWorld serves one job (number 1) with paths, each of 1000 bytes.
func foldWorld(t *testing.T, paths ...string) (*fixture, map[string]*circlecitest.Artifact) {
	t.Helper()
	w := circlecitest.NewWorld()
	p := w.AddProject("gh/acme/widgets", "main")
	job := p.AddPipeline("main").AddWorkflow("build").AddJob("docs", circlecitest.JobOptions{})
	arts := map[string]*circlecitest.Artifact{}
	f := &fixture{w: w, proj: p}
	for _, path := range paths {
		arts[path] = job.AddArtifact(0, path, 1000)
		f.arts = append(f.arts, arts[path])
	}
	f.srv = circlecitest.Start(t, w, circlecitest.Options{Token: token})
	f.client = newClient(t, f.srv.URL)
	return f, arts
}

// failures maps each failed artifact path to its error.
func failures(sum *ccsync.Summary) map[string]string {
	m := map[string]string{}
	for _, f := range sum.Failures {
		m[f.Path] = f.Error
	}
	return m
}

func TestCaseClashOnAFoldingDestinationFailsBothAndKeepsTheRest(t *testing.T) {
	f, arts := foldWorld(t, "Report.html", "report.html", "other.txt")
	dest := newFoldingSink(sink.NameFolding{Case: sink.FoldUnicode})
	sum, err := f.pull(t, t.Context(), dest, ccsync.Selection{PipelineNumber: 1}, pullOpts())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Failed != 2 || sum.Transferred != 1 {
		t.Fatalf("transferred %d, failed %d (%+v); want report.html and Report.html failed, other.txt transferred", sum.Transferred, sum.Failed, sum.Failures)
	}
	got := failures(sum)
	for _, path := range []string{"Report.html", "report.html"} {
		msg := got[path]
		if !strings.Contains(msg, `"1/0/Report.html"`) || !strings.Contains(msg, `"1/0/report.html"`) || !strings.Contains(msg, "ignores case") || !strings.Contains(msg, "--exclude") {
			t.Errorf("%s: error %q; want one naming both keys, saying the destination ignores case, and what to do", path, msg)
		}
		if _, err := dest.mem.Stat(t.Context(), "1/0/"+path); err == nil {
			t.Errorf("%s was written despite the clash", path)
		}
	}
	if b := read(t, dest, "1/0/other.txt"); !bytes.Equal(b, content(t, arts["other.txt"])) {
		t.Error("other.txt is not what the server sent")
	}
}

func TestNormalisationClashOnAFoldingDestinationFailsBoth(t *testing.T) {
	nfc, nfd := "caf\u00e9.txt", "cafe\u0301.txt"
	f, _ := foldWorld(t, nfc, nfd, "other.txt")
	dest := newFoldingSink(sink.NameFolding{Normalization: true})
	sum, err := f.pull(t, t.Context(), dest, ccsync.Selection{PipelineNumber: 1}, pullOpts())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Failed != 2 || sum.Transferred != 1 {
		t.Fatalf("transferred %d, failed %d (%+v); want both spellings of café.txt failed", sum.Transferred, sum.Failed, sum.Failures)
	}
	for path, msg := range failures(sum) {
		if !strings.Contains(msg, "accents") || !strings.Contains(msg, "1/0/"+nfc) || !strings.Contains(msg, "1/0/"+nfd) {
			t.Errorf("%q: error %q; want one naming both keys and saying why", path, msg)
		}
	}
}

func TestCaseClashWithAKeyRecordedEarlierFailsTheNewArtifact(t *testing.T) {
	f, arts := foldWorld(t, "Report.html", "report.html")
	dest := newFoldingSink(sink.NameFolding{Case: sink.FoldUnicode, Normalization: true})
	sum, err := f.pull(t, t.Context(), dest, ccsync.Selection{PipelineNumber: 1, Include: []string{"Report.html"}}, pullOpts())
	if err != nil || sum.Transferred != 1 {
		t.Fatalf("first pull: %v, %+v", err, sum)
	}
	// A later run selects the other spelling only: writing it would
	// replace the recorded file.
	sum, err = f.pull(t, t.Context(), dest, ccsync.Selection{PipelineNumber: 1, Include: []string{"report.html"}}, pullOpts())
	if err != nil {
		t.Fatal(err)
	}
	msg := failures(sum)["report.html"]
	if sum.Failed != 1 || !strings.Contains(msg, `"1/0/Report.html"`) || !strings.Contains(msg, "earlier run") {
		t.Errorf("second pull: failed %d (%+v); want report.html failed, naming the recorded 1/0/Report.html", sum.Failed, sum.Failures)
	}
	if b := read(t, dest, "1/0/Report.html"); !bytes.Equal(b, content(t, arts["Report.html"])) {
		t.Error("the recorded Report.html was overwritten")
	}
}

func TestFileAndFolderInOtherCaseOnAFoldingDestinationFailBoth(t *testing.T) {
	f, _ := foldWorld(t, "Docs", "docs/index.html", "other.txt")
	dest := newFoldingSink(sink.NameFolding{Case: sink.FoldASCII})
	sum, err := f.pull(t, t.Context(), dest, ccsync.Selection{PipelineNumber: 1}, pullOpts())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Failed != 2 || sum.Transferred != 1 {
		t.Fatalf("transferred %d, failed %d (%+v); want Docs and docs/index.html failed", sum.Transferred, sum.Failed, sum.Failures)
	}
	for path, msg := range failures(sum) {
		if !strings.Contains(msg, "as a file") || !strings.Contains(msg, "as a folder") || !strings.Contains(msg, "ignores case") {
			t.Errorf("%s: error %q; want a file/folder clash on a destination that ignores case", path, msg)
		}
	}
}

func TestFolderSpelledInAnotherCaseIsNotFetchedAgain(t *testing.T) {
	// Both files are kept in one folder, spelled "Docs" as the first
	// made it; the rerun finds docs/b.html listed as Docs/b.html.
	f, _ := foldWorld(t, "Docs/a.html", "docs/b.html")
	dest := newFoldingSink(sink.NameFolding{Case: sink.FoldUnicode})
	opts := pullOpts()
	opts.Concurrency = 1
	sum, err := f.pull(t, t.Context(), dest, ccsync.Selection{PipelineNumber: 1}, opts)
	if err != nil || sum.Transferred != 2 {
		t.Fatalf("first pull: %v, %+v", err, sum)
	}
	sum, err = f.pull(t, t.Context(), dest, ccsync.Selection{PipelineNumber: 1}, pullOpts())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Skipped != 2 || sum.Transferred != 0 {
		t.Errorf("rerun: transferred %d, skipped %d; want both recorded files found and skipped", sum.Transferred, sum.Skipped)
	}
}

func TestCaseSensitiveDestinationKeepsBothSpellings(t *testing.T) {
	f, arts := foldWorld(t, "Report.html", "report.html", "caf\u00e9.txt", "cafe\u0301.txt")
	dest, dir := localSink(t)
	how, err := dest.NameFolding(t.Context())
	if err != nil || how.Folds() {
		t.Skipf("%s folds names (%v, %v): this test needs a case-sensitive file system", dir, how, err)
	}
	sum, err := f.pull(t, t.Context(), dest, ccsync.Selection{PipelineNumber: 1}, pullOpts())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Failed != 0 || sum.Transferred != 4 {
		t.Fatalf("transferred %d, failed %d (%+v); want all four kept", sum.Transferred, sum.Failed, sum.Failures)
	}
	checkTree(t, dir, f.arts)
	_ = arts
}

func read(t *testing.T, s sink.Sink, key string) []byte {
	t.Helper()
	r, err := s.Open(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCaseClashAcrossJobsFailsBothWithALayoutHint(t *testing.T) {
	w := circlecitest.NewWorld()
	p := w.AddProject("gh/acme/widgets", "main")
	wf := p.AddPipeline("main").AddWorkflow("build")
	upper, lower := wf.AddJob("Build", circlecitest.JobOptions{}), wf.AddJob("build", circlecitest.JobOptions{})
	upper.AddArtifact(0, "a.txt", 100)
	upper.AddArtifact(0, "b.txt", 100)
	lower.AddArtifact(0, "a.txt", 100)
	f := &fixture{w: w, proj: p}
	f.srv = circlecitest.Start(t, w, circlecitest.Options{Token: token})
	f.client = newClient(t, f.srv.URL)
	opts := pullOpts()
	opts.Layout, _ = ccsync.ParseLayout("{job_name}/{path}")
	dest := newFoldingSink(sink.NameFolding{Case: sink.FoldUnicode})
	sum, err := f.pull(t, t.Context(), dest, ccsync.Selection{PipelineNumber: 1}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Failed != 2 || sum.Transferred != 1 {
		t.Fatalf("transferred %d, failed %d (%+v); want both a.txt failed, b.txt transferred", sum.Transferred, sum.Failed, sum.Failures)
	}
	for _, fl := range sum.Failures {
		if !strings.Contains(fl.Error, `"Build/a.txt"`) || !strings.Contains(fl.Error, `"build/a.txt"`) || !strings.Contains(fl.Error, "--layout") {
			t.Errorf("job %d %s: error %q; want both keys named and a --layout hint", fl.JobNumber, fl.Path, fl.Error)
		}
	}
}
