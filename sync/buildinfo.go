package sync

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// release is the version a release build stamps in with
// -ldflags "-X github.com/artifact-sync/artifact-sync/sync.release=1.2.3"
// (.ci/release): its builds use -trimpath and -buildvcs=false to be
// reproducible, so the build info holds neither a module version nor a
// revision to say which release it is.
var release string

// Version says which build of the tool this is: the release it was stamped
// with and the Go release, or else, from its build info, the module
// version, the revision when the version does not already hold it, and the
// Go release.
func Version() string {
	if release != "" {
		return release + " " + runtime.Version()
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	return versionOf(bi)
}

// versionOf says which build bi is: the module version, the revision when the
// version does not already hold it (a pseudo-version does), and the Go
// release.
func versionOf(bi *debug.BuildInfo) string {
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" && !strings.Contains(v, rev) {
		v += " (" + rev + modified + ")"
	}
	return v + " " + bi.GoVersion
}
