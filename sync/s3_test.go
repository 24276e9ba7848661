package sync_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
	"github.com/artifact-sync/artifact-sync/sink"
	"github.com/artifact-sync/artifact-sync/sink/sinktest"
	ccsync "github.com/artifact-sync/artifact-sync/sync"
)

func TestPullToS3ThenRerunAndVerify(t *testing.T) {
	env := sinktest.NewS3Bucket(t)
	f := newFixture(t, circlecitest.Options{Redirect: true})
	dest := env.NewS3(t, "mirror/widgets")

	sum, err := f.pull(t, t.Context(), dest, ccsync.Selection{PipelineNumber: 1}, pullOpts())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Transferred != len(f.arts) || sum.Failed != 0 {
		t.Fatalf("summary %+v", sum)
	}
	for _, a := range f.arts {
		rc, err := dest.Open(t.Context(), defaultKey(a))
		if err != nil {
			t.Errorf("%s: %v", defaultKey(a), err)
			continue
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(got, content(t, a)) {
			t.Errorf("%s differs in S3", defaultKey(a))
		}
		info, err := dest.Stat(t.Context(), defaultKey(a))
		if err != nil || info.SHA256 != a.SHA256() {
			t.Errorf("%s: stored SHA-256 %q, want %q (%v)", defaultKey(a), info.SHA256, a.SHA256(), err)
		}
	}
	if leaks := f.srv.LeakedCredentials(); len(leaks) > 0 {
		t.Errorf("credentials leaked to storage: %+v", leaks)
	}

	// The manifest lives in the bucket: a fresh sink (a new runner) resumes.
	fresh := env.NewS3(t, "mirror/widgets")
	before := f.srv.DownloadTotals().Started
	sum, err = f.pull(t, t.Context(), fresh, ccsync.Selection{PipelineNumber: 1}, pullOpts())
	if err != nil || sum.Transferred != 0 || sum.Skipped != len(f.arts) {
		t.Fatalf("rerun: %+v, %v", sum, err)
	}
	if f.srv.DownloadTotals().Started != before {
		t.Error("the rerun downloaded again")
	}

	res, err := ccsync.Verify(t.Context(), fresh, ccsync.VerifyOptions{Download: true})
	if err != nil || res.Failed != 0 || len(res.Unexpected) != 0 || res.Artifacts != len(f.arts) {
		t.Fatalf("verify: %+v, %v", res, err)
	}
	if err := fresh.Delete(t.Context(), defaultKey(f.arts[0])); err != nil {
		t.Fatal(err)
	}
	res, err = ccsync.Verify(t.Context(), fresh, ccsync.VerifyOptions{})
	if err != nil || len(res.Missing) != 1 {
		t.Fatalf("verify after a delete: %+v, %v", res, err)
	}
}

// A plain pull to S3 puts back what the manifest records but the bucket
// lost or holds at another size, found by listing the bucket, and fetches
// nothing else.
func TestPullToS3RepairsWhatIsMissing(t *testing.T) {
	env := sinktest.NewS3Bucket(t)
	f := newFixture(t, circlecitest.Options{})
	dest := env.NewS3(t, "mirror")
	if _, err := f.pull(t, t.Context(), dest, ccsync.Selection{PipelineNumber: 1}, pullOpts()); err != nil {
		t.Fatal(err)
	}
	if err := dest.Delete(t.Context(), defaultKey(f.arts[3])); err != nil {
		t.Fatal(err)
	}
	if _, err := dest.Put(t.Context(), defaultKey(f.arts[5]), strings.NewReader("resized"), sink.PutOptions{Size: 7}); err != nil {
		t.Fatal(err)
	}
	f.srv.ResetStats()
	sum, err := f.pull(t, t.Context(), env.NewS3(t, "mirror"), ccsync.Selection{PipelineNumber: 1}, pullOpts())
	if err != nil || sum.Transferred != 2 || sum.Failed != 0 || sum.Skipped != len(f.arts)-2 {
		t.Fatalf("rerun: %+v, %v; want the deleted and the resized object fetched again", sum, err)
	}
	if got := f.srv.DownloadTotals().Started; got != 2 {
		t.Errorf("%d downloads, want 2", got)
	}
	for _, a := range []*circlecitest.Artifact{f.arts[3], f.arts[5]} {
		rc, err := dest.Open(t.Context(), defaultKey(a))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(got, content(t, a)) {
			t.Errorf("%s was not put back", defaultKey(a))
		}
	}
}

// An upload to S3 cut after its last part went up, before it was completed
// (a kill at that instant), is completed by the next run from what is kept:
// one byte is asked for to prove the version, and no part is sent again.
func TestS3UploadKeptWholeIsCompleted(t *testing.T) {
	env := sinktest.NewS3Bucket(t)
	const size = 10 << 20 // two 5 MiB parts
	w, a := bigWorld(size)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: token})
	client := newClient(t, srv.URL)
	dest := env.NewS3(t, "whole")
	data := content(t, a)
	_, err := dest.Put(t.Context(), defaultKey(a), io.MultiReader(bytes.NewReader(data), iotest.ErrReader(errCut)),
		sink.PutOptions{Size: size, Validator: a.ETag()})
	if !errors.Is(err, errCut) {
		t.Fatalf("making an upload kept whole: %v", err)
	}
	if p, err := dest.Partial(t.Context(), defaultKey(a)); err != nil || p.Size != size {
		t.Fatalf("Partial = %+v, %v; want every byte kept", p, err)
	}
	sum, err := ccsync.Pull(t.Context(), client, client, slug, &ccsync.Selection{}, dest, pullOpts())
	if err != nil || sum.Transferred != 1 || sum.Failed != 0 {
		t.Fatalf("pull: %+v, %v", sum, err)
	}
	if got := srv.BytesServed(); got > 1 {
		t.Errorf("served %d bytes, want 1 (the byte that proves the version)", got)
	}
	rc, err := dest.Open(t.Context(), defaultKey(a))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, data) {
		t.Errorf("the completed object differs from the artifact")
	}
}
