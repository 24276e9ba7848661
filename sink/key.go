package sink

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidKey is matched (errors.Is) by every error ValidKey returns.
var ErrInvalidKey = errors.New("invalid key")

// ValidKey reports whether key may name an object in any sink. It refuses
// keys that are empty, absolute, contain NUL or a backslash (a separator on
// Windows, so "..\\x" would escape there), have an empty, "." or ".."
// segment, or end in a slash; it accepts anything else, including "a..b",
// spaces and non-ASCII text. Such a key joined below any directory or
// prefix stays below it. The error is permanent: retrying cannot fix a key.
func ValidKey(key string) error {
	reason := ""
	switch {
	case key == "":
		reason = "empty"
	case strings.IndexByte(key, 0) >= 0:
		reason = "contains NUL"
	case strings.IndexByte(key, '\\') >= 0:
		reason = "contains a backslash"
	case key[0] == '/':
		reason = "absolute"
	case key[len(key)-1] == '/':
		reason = "ends with a slash"
	default:
		for seg := range strings.SplitSeq(key, "/") {
			switch seg {
			case "":
				reason = "has an empty segment"
			case ".":
				reason = `has a "." segment`
			case "..":
				reason = `has a ".." segment`
			}
			if reason != "" {
				break
			}
		}
	}
	if reason == "" {
		return nil
	}
	return &PermanentError{Err: fmt.Errorf("%w %q: %s", ErrInvalidKey, key, reason)}
}
