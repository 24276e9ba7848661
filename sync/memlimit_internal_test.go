package sync

import "testing"

// TestMemoryLimitLeavesHeadroom: the soft memory limit never falls below
// half as much again as what is live, so a large run's collector never
// runs back to back, and never below its floor.
func TestMemoryLimitLeavesHeadroom(t *testing.T) {
	for _, tc := range []struct {
		live uint64
		want int64
	}{
		{0, minMemoryLimit},
		{minMemoryLimit / 2, minMemoryLimit},
		{minMemoryLimit, minMemoryLimit / 2 * 3},
		{1 << 30, 3 << 29},
	} {
		if got := memoryLimit(tc.live); got != tc.want {
			t.Errorf("memoryLimit(%d) = %d, want %d", tc.live, got, tc.want)
		}
	}
	if got := memoryLimit(1 << 63); got < 1<<62 {
		t.Errorf("memoryLimit(1<<63) = %d, want at least 1<<62", got)
	}
}
