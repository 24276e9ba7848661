package sync_test

import (
	"slices"
	"strings"
	"testing"

	ccsync "github.com/artifact-sync/artifact-sync/sync"
)

// TestJobFlagTakesUUIDs: --job takes job numbers and job UUIDs
// ($CIRCLE_WORKFLOW_JOB_ID) in one selection, each once whatever its case.
func TestJobFlagTakesUUIDs(t *testing.T) {
	const id = "5034460f-c7c4-4c43-9457-de07e2029e7b"
	var sel ccsync.Selection
	if _, err := sel.Parse("gh/acme/widgets", []string{"12", strings.ToUpper(id), " " + id, "12"}, 0); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sel.Jobs, []int64{12}) || !slices.Equal(sel.JobIDs, []string{id}) {
		t.Errorf("Jobs %v, JobIDs %q", sel.Jobs, sel.JobIDs)
	}

	sel = ccsync.Selection{Branch: "main"}
	if _, err := sel.Parse("gh/acme/widgets", []string{id}, 0); err == nil || !strings.Contains(err.Error(), "give only one of --job") {
		t.Errorf("--job UUID with --branch: %v", err)
	}
	sel = ccsync.Selection{}
	_, err := sel.Parse("gh/acme/widgets", []string{"5034460f-c7c4"}, 0)
	if err == nil || !strings.Contains(err.Error(), `"$CIRCLE_WORKFLOW_JOB_ID"`) {
		t.Errorf("a cut UUID: %v", err)
	}
}
