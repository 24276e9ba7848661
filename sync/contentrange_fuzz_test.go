package sync

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// FuzzContentRange: whatever a server sends as Content-Range, parsing never
// panics, accepts only "bytes first-last/total" with first <= last < total
// (all fitting in an int64), and agrees with a plain reading of that form.
func FuzzContentRange(f *testing.F) {
	for _, s := range []string{
		"bytes 0-0/1", "bytes 1000-4999/5000", "bytes 1000-1009/5000", "bytes 0-9/*", "bytes */5000",
		"bytes 5-4/10", "bytes 0-9/9", "bytes 0-9223372036854775806/9223372036854775807",
		"bytes 0-99999999999999999999/5", "bytes -1-5/10", "bytes +1-5/10", " bytes 1-2/3 ", "items 1-2/3", "",
	} {
		f.Add(s)
	}
	form := regexp.MustCompile(`^bytes ([0-9]+)-([0-9]+)/([0-9]+)$`)
	f.Fuzz(func(t *testing.T, s string) {
		cr, ok := parseContentRange(s)
		m := form.FindStringSubmatch(strings.TrimSpace(s))
		want := m != nil
		var first, last, total int64
		if want {
			var e1, e2, e3 error
			first, e1 = strconv.ParseInt(m[1], 10, 64)
			last, e2 = strconv.ParseInt(m[2], 10, 64)
			total, e3 = strconv.ParseInt(m[3], 10, 64)
			want = e1 == nil && e2 == nil && e3 == nil && first <= last && last < total
		}
		if ok != want {
			t.Fatalf("parseContentRange(%q) ok = %v, want %v", s, ok, want)
		}
		if !ok {
			return
		}
		if cr != (contentRange{first, last, total}) || cr.first < 0 || cr.last-cr.first+1 <= 0 {
			t.Fatalf("parseContentRange(%q) = %+v", s, cr)
		}
		if back, ok := parseContentRange(fmt.Sprintf("bytes %d-%d/%d", cr.first, cr.last, cr.total)); !ok || back != cr {
			t.Fatalf("%+v does not survive formatting", cr)
		}
	})
}
