package sync_test

import (
	"testing"

	ccsync "github.com/artifact-sync/artifact-sync/sync"
)

// TestSizeFlag: sizes read as cli.md says (K, M, G binary, with or without
// B or iB, fractions allowed) and anything else is refused with the fix.
func TestSizeFlag(t *testing.T) {
	var n int64
	v := ccsync.NewSize(&n, "64M")
	if n != 64<<20 || v.String() != "64M" {
		t.Fatalf("default: %d %q", n, v.String())
	}
	for in, want := range map[string]int64{"512": 512, "64K": 64 << 10, "64MiB": 64 << 20, "64mb": 64 << 20, "1.5G": 3 << 29, "2g": 2 << 30} {
		if err := v.Set(in); err != nil || n != want {
			t.Errorf("%q: %d, %v; want %d", in, n, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1M", "64X", "M"} {
		if err := v.Set(in); err == nil {
			t.Errorf("%q accepted as %d", in, n)
		}
	}
}
