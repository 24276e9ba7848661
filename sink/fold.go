package sink

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// NameFolder is implemented by sinks whose keys may not be compared byte
// for byte: a directory on a file system that ignores case (APFS and HFS+
// by default, NTFS, FAT) or Unicode normalisation (APFS, HFS+), where
// "Report.html" and "report.html", or "é" composed and decomposed, are one
// file. A sink that does not implement it (S3, Memory) keeps every
// different key apart.
type NameFolder interface {
	// NameFolding finds out how the destination compares names. It may
	// create and remove a file in the sink's own state folder to see.
	NameFolding(ctx context.Context) (NameFolding, error)
}

// CaseFolding is how a destination compares letters of different case.
type CaseFolding int

const (
	CaseSensitive CaseFolding = iota // "A" and "a" are two names
	FoldASCII                        // only A-Z and a-z are one (XFS's ascii-ci)
	FoldUnicode                      // every letter and its other case are one
)

// NameFolding says which keys a destination takes for one. The zero value
// is a destination that compares keys byte for byte.
type NameFolding struct {
	Case CaseFolding
	// Normalization: names that differ only in their Unicode normalisation
	// form ("é" as U+00E9 or as "e" and U+0301) are one.
	Normalization bool
}

// Folds reports whether two different keys can name one object.
func (f NameFolding) Folds() bool { return f.Case != CaseSensitive || f.Normalization }

// Key returns the form of key that is the same for every key the
// destination takes for the same name: keys a and b name one object there
// exactly when f.Key(a) == f.Key(b). Where the destination's own rule is
// narrower than Unicode's full case folding (NTFS and APFS keep "ß" and
// "ss" apart), Key errs on the side of taking two names for one.
func (f NameFolding) Key(key string) string {
	if isASCII(key) {
		if f.Case != CaseSensitive {
			return asciiLower(key)
		}
		return key
	}
	switch f.Case {
	case FoldASCII:
		key = asciiLower(key)
	case FoldUnicode:
		if !f.Normalization {
			return cases.Fold().String(key)
		}
		// Unicode's canonical caseless match: NFD, fold, NFD. NFC at the
		// end gives the same comparison with shorter keys.
		key = cases.Fold().String(norm.NFD.String(key))
		return norm.NFC.String(key)
	}
	if f.Normalization {
		key = norm.NFC.String(key)
	}
	return key
}

// Why says, for a message, why the destination takes keys a and b (for
// which Key is the same) for one: "it ignores case" or a phrase like it.
func (f NameFolding) Why(a, b string) string {
	if f.Normalization && norm.NFC.String(a) == norm.NFC.String(b) {
		return "it ignores how accents are encoded (Unicode normalisation)"
	}
	if caseOnly := (NameFolding{Case: f.Case}); caseOnly.Key(a) == caseOnly.Key(b) {
		return "it ignores case"
	}
	return "it ignores case and how accents are encoded"
}

// String describes f for logs: "byte-exact", "case", "case+nfc".
func (f NameFolding) String() string {
	var parts []string
	switch f.Case {
	case FoldASCII:
		parts = append(parts, "ascii-case")
	case FoldUnicode:
		parts = append(parts, "case")
	}
	if f.Normalization {
		parts = append(parts, "normalisation")
	}
	if len(parts) == 0 {
		return "byte-exact"
	}
	return strings.Join(parts, "+")
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func asciiLower(s string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, s)
}

var _ NameFolder = (*Local)(nil)

// NameFolding implements NameFolder. It creates a file in DEST's tmp folder
// whose name has upper-case letters and an "É" written as one character,
// looks it up by the same name in lower case, with only the "É" in lower
// case, and with the "É" written as "E" and a combining accent, and
// removes it. Folders of DEST that are other mounts are not probed; DEST's
// own file system is.
func (l *Local) NameFolding(ctx context.Context) (NameFolding, error) {
	if err := ctx.Err(); err != nil {
		return NameFolding{}, err
	}
	if err := l.ensureDir(tmpDir); err != nil {
		return NameFolding{}, fmt.Errorf("finding out how %s compares names: %w", l.dir, err)
	}
	// Upper-case ASCII letters and digits, then "É" (U+00C9).
	base := "NAMES-" + rand.Text() + "-"
	name := base + "\u00c9"
	rel := tmpDir + "/" + name
	f, err := l.root.OpenFile(native(rel), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return NameFolding{}, localErr(fmt.Errorf("finding out how %s compares names: %w", l.dir, err))
	}
	defer l.root.Remove(native(rel))
	fi, err := f.Stat()
	f.Close()
	if err != nil {
		return NameFolding{}, localErr(fmt.Errorf("finding out how %s compares names: %w", l.dir, err))
	}
	same := func(other string) (bool, error) {
		ofi, err := l.root.Lstat(native(tmpDir + "/" + other))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return false, nil
		case err != nil:
			return false, localErr(fmt.Errorf("finding out how %s compares names: %w", l.dir, err))
		}
		return os.SameFile(fi, ofi), nil
	}
	var folding NameFolding
	lower, err := same(strings.ToLower(base) + "\u00c9")
	if err != nil {
		return NameFolding{}, err
	}
	accent, err := same(base + "\u00e9")
	if err != nil {
		return NameFolding{}, err
	}
	switch {
	case accent:
		folding.Case = FoldUnicode
	case lower:
		folding.Case = FoldASCII
	}
	if folding.Normalization, err = same(base + "E\u0301"); err != nil {
		return NameFolding{}, err
	}
	return folding, nil
}
