package manifest

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
)

// appendRecord appends r as one line of JSON, byte for byte what
// encoding/json writes for the equivalent recordJSON (with HTML escaping
// off), without its reflection: snapshots of many entries are written
// often enough for that to matter. TestAppendRecordMatchesEncodingJSON and
// FuzzAppendRecord keep the two in step.
func appendRecord(b []byte, r record) []byte {
	return appendRecordSum(b, r, "")
}

// appendRecordSum is appendRecord for a record whose SHA-256 is given as
// its 32 bytes in sum, as the manifest keeps it in memory, rather than in
// r.SHA256.
func appendRecordSum(b []byte, r record, sum string) []byte {
	b = append(b, `{"project":`...)
	b = appendString(b, r.Project)
	b = append(b, `,"job_number":`...)
	b = strconv.AppendInt(b, r.JobNumber, 10)
	b = append(b, `,"node_index":`...)
	b = strconv.AppendInt(b, r.NodeIndex, 10)
	b = append(b, `,"path":`...)
	b = appendString(b, r.Path)
	if !r.Removed.IsZero() {
		b = append(b, `,"removed":`...)
		b = appendTime(b, r.Removed)
		if r.Run != "" {
			b = append(b, `,"run":`...)
			b = appendString(b, r.Run)
		}
		return append(b, '}')
	}
	if r.Key != "" {
		b = append(b, `,"key":`...)
		b = appendString(b, r.Key)
	}
	b = append(b, `,"size":`...)
	b = strconv.AppendInt(b, r.Size, 10)
	if sum != "" {
		b = append(b, `,"sha256":"`...)
		b = appendHex(b, sum)
		b = append(b, '"')
	} else if r.SHA256 != "" {
		b = append(b, `,"sha256":`...)
		b = appendString(b, r.SHA256)
	}
	for _, f := range [...]struct{ name, value string }{
		{`,"etag":`, r.ETag},
		{`,"last_modified":`, r.LastModified},
	} {
		if f.value != "" {
			b = append(b, f.name...)
			b = appendString(b, f.value)
		}
	}
	if !r.Completed.IsZero() {
		b = append(b, `,"completed":`...)
		b = appendTime(b, r.Completed)
	}
	if r.Run != "" {
		b = append(b, `,"run":`...)
		b = appendString(b, r.Run)
	}
	return append(b, '}')
}

// appendTime appends t as encoding/json does; checkEntry keeps years
// within the four digits RFC 3339 allows.
func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendString appends s as a JSON string. Printable ASCII is handled
// here; anything else goes through encoding/json, whose escaping of
// control characters, U+2028, U+2029 and invalid UTF-8 it then matches.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf {
			return appendStringSlow(b, s)
		}
	}
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', c)
			start = i + 1
		}
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

func appendStringSlow(b []byte, s string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return append(b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
}
