package sink_test

import (
	"runtime"
	"testing"

	"github.com/artifact-sync/artifact-sync/sink"
)

func TestNameFoldingKey(t *testing.T) {
	const nfc, nfd = "caf\u00e9", "cafe\u0301"
	var (
		exact   = sink.NameFolding{}
		ascii   = sink.NameFolding{Case: sink.FoldASCII}
		unicase = sink.NameFolding{Case: sink.FoldUnicode}
		norm    = sink.NameFolding{Normalization: true}
		apfs    = sink.NameFolding{Case: sink.FoldUnicode, Normalization: true}
	)
	for _, c := range []struct {
		how  sink.NameFolding
		a, b string
		one  bool
	}{
		{exact, "Report.html", "report.html", false},
		{exact, nfc, nfd, false},
		{ascii, "Report.html", "report.html", true},
		{ascii, "\u00c9t\u00e9", "\u00e9t\u00e9", false}, // XFS ascii-ci keeps É and é apart
		{unicase, "\u00c9t\u00e9", "\u00e9t\u00e9", true},
		{unicase, "a/Report.html", "a/report.html/x", false},
		{unicase, nfc, nfd, false},
		{norm, nfc, nfd, true},
		{norm, "Report.html", "report.html", false},
		{apfs, "CAF\u00c9", nfd, true},
		{apfs, "7/0/Docs", "7/0/docs", true},
		{apfs, "7/0/docs", "8/0/docs", false},
	} {
		if one := c.how.Key(c.a) == c.how.Key(c.b); one != c.one {
			t.Errorf("%v: %q and %q one name = %v, want %v", c.how, c.a, c.b, one, c.one)
		}
	}
}

func TestLocalNameFoldingOnThisFileSystem(t *testing.T) {
	l, _ := sink.NewLocal(t.TempDir())
	how, err := l.NameFolding(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// Linux's temporary folders (ext4, tmpfs, xfs without ascii-ci)
	// compare names byte for byte.
	if runtime.GOOS == "linux" && how.Folds() {
		t.Errorf("NameFolding = %v on a case-sensitive file system", how)
	}
}
