package sync

import "testing"

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"dist/app.tgz":                 "dist/app.tgz",
		"build \"nightly\" – ünïcode":  "build \"nightly\" – ünïcode",
		"a\x1b]52;c;cm0gLXJmIH4=\x07b": `a\x1b]52;c;cm0gLXJmIH4=\x07b`,
		"tab\there\nnl\r":              `tab\there\nnl\r`,
		"\x9b31m":                      `\x9b31m`,
		"bidi\u202etxt.exe":            `bidi\u202etxt.exe`,
		"bad\xffbyte":                  `bad\xffbyte`,
		"del\x7f":                      `del\x7f`,
	} {
		if got := Printable(in); got != want {
			t.Errorf("Printable(%q) = %q, want %q", in, got, want)
		}
	}
}
