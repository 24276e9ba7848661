package sync

import (
	"runtime/debug"
	"testing"
)

// TestVersionNamesTheRevisionOnce: a build from a module version whose
// pseudo-version already holds the revision does not repeat it.
func TestVersionNamesTheRevisionOnce(t *testing.T) {
	const rev = "4bdfd0c1a2b3c4d5e6f708192a3b4c5d6e7f8091"
	settings := []debug.BuildSetting{{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: "false"}}
	for _, tc := range []struct{ version, want string }{
		{"v0.0.0-20261130053412-4bdfd0c1a2b3", "v0.0.0-20261130053412-4bdfd0c1a2b3 go1.26.0"},
		{"v1.2.0", "v1.2.0 (4bdfd0c1a2b3) go1.26.0"},
		{"", "(devel) (4bdfd0c1a2b3) go1.26.0"},
	} {
		bi := &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: tc.version}, Settings: settings}
		if got := versionOf(bi); got != tc.want {
			t.Errorf("version %q: %q, want %q", tc.version, got, tc.want)
		}
	}
}
