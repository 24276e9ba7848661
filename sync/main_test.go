package sync_test

import (
	"os"
	"testing"

	"github.com/artifact-sync/artifact-sync/sink/sinktest"
)

// TestMain says how many S3 tests were skipped, if any, and how to run them.
func TestMain(m *testing.M) { os.Exit(sinktest.Main(m)) }
