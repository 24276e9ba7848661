package sync_test

import (
	"bytes"
	"strings"
	"testing"

	ccsync "github.com/artifact-sync/artifact-sync/sync"
)

// A job whose listing failed is a failure entry but no artifact: an
// interrupted run with one counts every artifact it did not reach as not
// started, and its summary does not count the job as a failed artifact.
func TestListingFailuresAreNotArtifacts(t *testing.T) {
	sum := &ccsync.Summary{Artifacts: 10, Transferred: 5, Failed: 2, JobsFailed: 1,
		Failures: []ccsync.Failure{{JobNumber: 3, JobName: "test", Error: "listing its artifacts: 500"}, {JobNumber: 4, Path: "a", Error: "x"}}}
	if n := sum.NotStarted(); n != 4 {
		t.Errorf("NotStarted = %d, want 4 (10 artifacts, 5 transferred, 1 failed)", n)
	}
	var out bytes.Buffer
	sum.Report(&out, ccsync.Outcome{}, false, false)
	if line, _, _ := strings.Cut(out.String(), "\n"); !strings.Contains(line, "1 failed, 4 not started; the artifacts of 1 job could not be listed") {
		t.Errorf("counts line: %s", line)
	}
	if msg := sum.Err().Error(); msg != "1 of 10 artifacts failed, and listing the artifacts of 1 job failed; run the same command again to retry them" {
		t.Errorf("Err: %s", msg)
	}
}
