package manifest

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// decodeRecord decodes one record line. Lines as this package writes them
// take a fast path; anything else (escapes, whitespace, unknown or
// differently cased keys, floats) is left to encoding/json, so the result
// is always exactly what json.Unmarshal would produce.
func decodeRecord(line []byte, r *record) error {
	if fastDecodeRecord(line, r) {
		r.Completed, r.Removed = r.Completed.UTC(), r.Removed.UTC()
		return nil
	}
	var rj recordJSON
	if err := json.Unmarshal(line, &rj); err != nil {
		return err
	}
	*r = rj.record()
	return nil
}

// fastDecodeRecord decodes a flat object of known keys whose values are
// escape-free strings and plain integers, with no whitespace. It reports
// false for anything else; r is then garbage.
func fastDecodeRecord(line []byte, r *record) bool {
	*r = record{}
	if len(line) < 2 || line[0] != '{' || line[len(line)-1] != '}' {
		return false
	}
	s := line[1 : len(line)-1]
	for len(s) > 0 {
		key, rest, ok := fastString(s)
		if !ok || len(rest) == 0 || rest[0] != ':' {
			return false
		}
		s = rest[1:]
		if len(s) == 0 {
			return false
		}
		if s[0] == '"' {
			var v []byte
			if v, s, ok = fastString(s); !ok {
				return false
			}
			switch string(key) {
			case "project":
				r.Project = string(v)
			case "path":
				r.Path = string(v)
			case "key":
				r.Key = string(v)
			case "sha256":
				r.SHA256 = string(v)
			case "etag":
				r.ETag = string(v)
			case "last_modified":
				r.LastModified = string(v)
			case "run":
				r.Run = string(v)
			case "completed":
				if r.Completed.UnmarshalText(v) != nil {
					return false
				}
			case "removed":
				if r.Removed.UnmarshalText(v) != nil {
					return false
				}
			default:
				return false
			}
		} else {
			var n int64
			if n, s, ok = fastInt(s); !ok {
				return false
			}
			switch string(key) {
			case "job_number":
				r.JobNumber = n
			case "node_index":
				r.NodeIndex = n
			case "size":
				r.Size = n
			default:
				return false
			}
		}
		if len(s) == 0 {
			break
		}
		if s[0] != ',' || len(s) == 1 {
			return false
		}
		s = s[1:]
	}
	return true
}

// fastString splits a leading JSON string from s and returns its value.
// It handles the escapes encoding/json writes for ETags and paths (\" and
// \\, and the rarer \/ \b \f \n \r \t); for \u escapes, control
// characters and invalid UTF-8 it reports false.
func fastString(s []byte) (str, rest []byte, ok bool) {
	if len(s) == 0 || s[0] != '"' {
		return nil, nil, false
	}
	var buf []byte // the unescaped value, once an escape is seen
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			if buf == nil {
				str = s[1:i]
			} else {
				str = buf
			}
			return str, s[i+1:], utf8.Valid(str)
		case c == '\\':
			if buf == nil {
				buf = append(make([]byte, 0, len(s)), s[1:i]...)
			}
			i++
			if i == len(s) {
				return nil, nil, false
			}
			switch s[i] {
			case '"', '\\', '/':
				buf = append(buf, s[i])
			case 'b':
				buf = append(buf, '\b')
			case 'f':
				buf = append(buf, '\f')
			case 'n':
				buf = append(buf, '\n')
			case 'r':
				buf = append(buf, '\r')
			case 't':
				buf = append(buf, '\t')
			default:
				return nil, nil, false
			}
		case c < 0x20:
			return nil, nil, false
		default:
			if buf != nil {
				buf = append(buf, c)
			}
		}
	}
	return nil, nil, false
}

// fastInt splits a leading JSON integer (-?(0|[1-9][0-9]*)) that fits an
// int64 from s.
func fastInt(s []byte) (n int64, rest []byte, ok bool) {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	start := i
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	switch {
	case i == start,
		s[start] == '0' && i-start > 1,
		i < len(s) && (s[i] == '.' || s[i] == 'e' || s[i] == 'E'):
		return 0, nil, false
	}
	n, err := strconv.ParseInt(string(s[:i]), 10, 64)
	if err != nil {
		return 0, nil, false
	}
	return n, s[i:], true
}

// Markers of the snapshot layout encodeSnapshot writes.
const (
	snapshotEntriesStart = ",\n  \"entries\": [\n"
	snapshotEntriesEnd   = "\n  ]\n}\n"
)

// fastSplitSnapshot splits a snapshot in the layout encodeSnapshot writes
// into its header (as a JSON object) and its entry lines. It reports false
// if data has any other layout; the caller then decodes it as a whole.
func fastSplitSnapshot(data []byte) (header []byte, lines [][]byte, ok bool) {
	i := bytes.Index(data, []byte(snapshotEntriesStart))
	if i < 0 || !bytes.HasSuffix(data, []byte(snapshotEntriesEnd)) {
		return nil, nil, false
	}
	start, end := i+len(snapshotEntriesStart), len(data)-len(snapshotEntriesEnd)+1
	if end < start {
		return nil, nil, false
	}
	body := data[start:end]
	header = append(data[:i:i], "\n}"...)
	lines = make([][]byte, 0, bytes.Count(body, []byte("\n")))
	for len(body) > 0 {
		j := bytes.IndexByte(body, '\n')
		line := body[:j]
		body = body[j+1:]
		if !bytes.HasPrefix(line, []byte("    {")) {
			return nil, nil, false
		}
		line = line[4:]
		if len(body) > 0 {
			var comma bool
			if line, comma = bytes.CutSuffix(line, []byte(",")); !comma {
				return nil, nil, false
			}
		}
		lines = append(lines, line)
	}
	return header, lines, true
}
