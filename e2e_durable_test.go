package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
)

// A full-length file of zeros where an artifact was (what a power cut or a
// failing disk leaves) passes a plain pull, which compares sizes; pull
// --verify re-hashes what the manifest records and fetches it again, and
// only it.
func TestPullVerifyRepairsAZeroedFile(t *testing.T) {
	w, arts := smallWorld(6, 3000)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
	d := localDest(t, srv)
	wantCode(t, runTool(t, d.env, time.Minute, d.pull("--json")...), 0)

	zeroed := filepath.Join(d.to, filepath.FromSlash(key(arts[2].Job().Number(), 0, arts[2].Path())))
	if err := os.WriteFile(zeroed, make([]byte, arts[2].Size()), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runTool(t, d.env, time.Minute, d.pull("--json")...)
	wantCode(t, r, 0)
	if s := pullSummaryOf(t, r); s.Transferred != 0 {
		t.Fatalf("a plain pull transferred %d, want 0 (it compares sizes only)", s.Transferred)
	}
	before := srv.Downloads(arts[2]).Completed
	r = runTool(t, d.env, time.Minute, d.pull("--verify", "--json")...)
	wantCode(t, r, 0)
	if s := pullSummaryOf(t, r); s.Transferred != 1 || s.Skipped != len(arts)-1 || s.Failed != 0 {
		t.Errorf("pull --verify: %+v, want the zeroed file alone fetched again", s)
	}
	if got := srv.Downloads(arts[2]).Completed - before; got != 1 {
		t.Errorf("the zeroed artifact was downloaded %d times, want 1", got)
	}
	d.check(t, mirrorOf(arts...), true)
	wantVerified(t, d, len(arts))
}

type pullCounts struct {
	Artifacts, Transferred, Skipped, Failed int
}

func pullSummaryOf(t *testing.T, r e2eResult) pullCounts {
	t.Helper()
	var s pullCounts
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("pull --json printed %q: %v", r.stdout, err)
	}
	return s
}
