package sink

import (
	"bytes"
	"context"
	"encoding/xml"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"
	smithytime "github.com/aws/smithy-go/time"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// listPage is what List takes from one ListObjectsV2 page.
type listPage struct {
	objects   []listObject
	truncated bool
	next      string // NextContinuationToken
	sdk       bool   // decoded by the SDK, not by parseListObjectsV2
}

type listObject struct {
	key     string // the full key, with the sink's prefix
	size    int64
	modTime time.Time
}

// listPage requests one page of ListObjectsV2. The page's XML is read by
// parseListObjectsV2 where it can (every page a usual S3 server sends):
// the SDK's decoder, built on encoding/xml, costs about 13 ms of CPU per
// page of 1,000 keys, as much as the rest of a no-op run's client side,
// and the check of what a rerun finds at the destination reads a page per
// thousand recorded artifacts. Any other page is decoded by the SDK, as
// are errors.
func (s *S3) listPage(ctx context.Context, in *s3.ListObjectsV2Input) (listPage, error) {
	out, err := s.client.ListObjectsV2(ctx, in, func(o *s3.Options) {
		o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
			return st.Deserialize.Insert(fastListDecoder{}, "OperationDeserializer", middleware.After)
		})
	})
	if err != nil {
		return listPage{}, err
	}
	if p, ok := out.ResultMetadata.Get(fastListKey{}).(*listPage); ok {
		return *p, nil
	}
	p := listPage{truncated: aws.ToBool(out.IsTruncated), next: aws.ToString(out.NextContinuationToken), sdk: true}
	p.objects = make([]listObject, 0, len(out.Contents))
	for _, o := range out.Contents {
		p.objects = append(p.objects, listObject{key: aws.ToString(o.Key), size: aws.ToInt64(o.Size), modTime: aws.ToTime(o.LastModified)})
	}
	return p, nil
}

// fastListKey keys the page fastListDecoder read in the result metadata.
type fastListKey struct{}

// fastListDecoder sits between the SDK's ListObjectsV2 deserializer and the
// transport. It reads a successful response's body (held to maxS3Answer
// by boundAnswers, beneath it); a body that
// parseListObjectsV2 reads goes up as the result metadata's page, and the
// SDK is handed an empty body (which it decodes as an empty page). Any
// other body is handed back to the SDK untouched.
type fastListDecoder struct{}

func (fastListDecoder) ID() string { return "ArtifactSyncFastListDecoder" }

func (fastListDecoder) HandleDeserialize(ctx context.Context, in middleware.DeserializeInput, next middleware.DeserializeHandler) (
	middleware.DeserializeOutput, middleware.Metadata, error,
) {
	out, md, err := next.HandleDeserialize(ctx, in)
	if err != nil {
		return out, md, err
	}
	resp, ok := out.RawResponse.(*smithyhttp.Response)
	if !ok || resp.StatusCode < 200 || resp.StatusCode >= 300 || resp.Body == nil {
		return out, md, nil
	}
	var buf bytes.Buffer
	if resp.ContentLength > 0 && resp.ContentLength <= maxS3Answer {
		buf.Grow(int(resp.ContentLength))
	}
	_, err = buf.ReadFrom(resp.Body)
	resp.Body.Close()
	if err != nil {
		return out, md, err
	}
	if p, ok := parseListObjectsV2(buf.Bytes()); ok {
		md.Set(fastListKey{}, &p)
		resp.Body = io.NopCloser(strings.NewReader(""))
	} else {
		resp.Body = io.NopCloser(bytes.NewReader(buf.Bytes()))
	}
	return out, md, nil
}

// parseListObjectsV2 reads a ListObjectsV2 result as the AWS SDK's
// decoder does, for documents of the shape S3 servers send: elements
// without attributes (but the root), names of ASCII letters, digits, '_',
// '.' and '-', text without carriage returns, and no comments, CDATA or
// processing instructions after the prolog. For any other document it
// returns false, and the caller lets the SDK decode it. Where it returns
// true, the SDK would have read the same keys, sizes, times, truncation
// and continuation token, and would not have failed (FuzzListObjectsV2
// holds it to that).
//
// Like the SDK it matches element names without regard to case, lets a
// later element of a kind replace an earlier one, skips unknown elements,
// and checks the values of the known ones that are not strings (sizes,
// counts, booleans, times) even where List does not use them.
func parseListObjectsV2(b []byte) (listPage, bool) {
	var p listPage
	// The prolog and the root's start tag, by encoding/xml itself: they
	// are a few bytes, and their rules (declaration, namespaces) are its.
	d := xml.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := d.Token()
		if err != nil {
			return p, false
		}
		if _, ok := tok.(xml.StartElement); ok {
			break
		}
	}
	i := int(d.InputOffset())
	open := bytes.LastIndexByte(b[:i], '<')
	if open < 0 || i < 2 || b[i-1] != '>' {
		return p, false
	}
	if b[i-2] == '/' {
		return p, true // <ListBucketResult/>: an empty page
	}
	root := b[open+1:]
	root = root[:nameLen(root)]
	if after := b[open+1+len(root)]; len(root) == 0 || !isXMLSpace(after) && after != '>' {
		return p, false // a name with a namespace prefix, or not plain
	}

	stack := []listField{fieldRoot}
	names := [][]byte{root}
	var (
		obj     *listObject
		scratch []byte
	)
	for {
		// Text up to the next tag.
		j := bytes.IndexByte(b[i:], '<')
		if j < 0 {
			return p, false // the root is not closed
		}
		top := stack[len(stack)-1]
		var value []byte
		if j > 0 {
			var ok bool
			if value, ok = xmlText(b[i:i+j], &scratch); !ok {
				return p, false
			}
		}
		i += j + 1
		// The tag.
		if i >= len(b) {
			return p, false
		}
		closing := b[i] == '/'
		if closing {
			i++
		}
		name := b[i:]
		name = name[:nameLen(name)]
		if len(name) == 0 {
			return p, false // '!', '?', or a name that is not plain
		}
		i += len(name)
		for i < len(b) && isXMLSpace(b[i]) {
			i++
		}
		self := false
		if !closing && i < len(b) && b[i] == '/' {
			self = true
			i++
		}
		if i >= len(b) || b[i] != '>' {
			return p, false // attributes, or a broken tag
		}
		i++

		if closing {
			if !bytes.Equal(name, names[len(names)-1]) || !top.set(&p, obj, value) {
				return p, false
			}
			stack, names = stack[:len(stack)-1], names[:len(names)-1]
			if len(stack) == 0 {
				return p, true // what follows the root, the SDK does not read
			}
			continue
		}
		if top.leaf() {
			return p, false // an element inside a value: the SDK fails
		}
		f := top.child(name)
		if f == fieldObject {
			p.objects = append(p.objects, listObject{})
			obj = &p.objects[len(p.objects)-1]
		}
		if self {
			if !f.set(&p, obj, nil) {
				return p, false
			}
			continue
		}
		stack, names = append(stack, f), append(names, name)
	}
}

// listField is what an element of a ListObjectsV2 result holds, by where
// it is: a node with children, or a value the SDK decodes (and checks).
type listField uint8

const (
	fieldSkip    listField = iota // unknown: skipped with whatever it holds
	fieldRoot                     // ListBucketResult
	fieldObject                   // Contents
	fieldPrefix                   // CommonPrefixes
	fieldOwner                    // Contents/Owner
	fieldRestore                  // Contents/RestoreStatus
	// values
	fieldString // a string List does not use
	fieldInt    // KeyCount, MaxKeys
	fieldBool   // RestoreStatus/IsRestoreInProgress
	fieldTime   // RestoreStatus/RestoreExpiryDate
	fieldTruncated
	fieldNext
	fieldKey
	fieldSize
	fieldModified
)

func (f listField) leaf() bool { return f >= fieldString }

// child is the field of an element called name inside f, as the SDK's
// decoder (deserializers.go of service/s3) matches it.
func (f listField) child(name []byte) listField {
	var known map[string]listField
	switch f {
	case fieldRoot:
		known = rootFields
	case fieldObject:
		known = objectFields
	case fieldPrefix:
		known = prefixFields
	case fieldOwner:
		known = ownerFields
	case fieldRestore:
		known = restoreFields
	default:
		return fieldSkip
	}
	if c, ok := known[string(name)]; ok {
		return c
	}
	for k, c := range known {
		if strings.EqualFold(k, string(name)) {
			return c
		}
	}
	return fieldSkip
}

var (
	rootFields = map[string]listField{
		"Contents": fieldObject, "CommonPrefixes": fieldPrefix,
		"ContinuationToken": fieldString, "Delimiter": fieldString, "EncodingType": fieldString,
		"Name": fieldString, "Prefix": fieldString, "StartAfter": fieldString,
		"NextContinuationToken": fieldNext, "IsTruncated": fieldTruncated,
		"KeyCount": fieldInt, "MaxKeys": fieldInt,
	}
	objectFields = map[string]listField{
		"Key": fieldKey, "Size": fieldSize, "LastModified": fieldModified,
		"ChecksumAlgorithm": fieldString, "ChecksumType": fieldString, "ETag": fieldString, "StorageClass": fieldString,
		"Owner": fieldOwner, "RestoreStatus": fieldRestore,
	}
	prefixFields  = map[string]listField{"Prefix": fieldString}
	ownerFields   = map[string]listField{"DisplayName": fieldString, "ID": fieldString}
	restoreFields = map[string]listField{"IsRestoreInProgress": fieldBool, "RestoreExpiryDate": fieldTime}
)

// set stores the value of an element of field f that just ended, or checks
// it as the SDK would; false where the SDK fails.
func (f listField) set(p *listPage, obj *listObject, v []byte) bool {
	var err error
	switch f {
	case fieldInt:
		_, err = strconv.ParseInt(string(v), 10, 64)
	case fieldBool:
		_, err = strconv.ParseBool(string(v))
	case fieldTime:
		_, err = smithytime.ParseDateTime(string(v))
	case fieldTruncated:
		p.truncated, err = strconv.ParseBool(string(v))
	case fieldNext:
		p.next = string(v)
	case fieldKey:
		obj.key = string(v)
	case fieldSize:
		obj.size, err = strconv.ParseInt(string(v), 10, 64)
	case fieldModified:
		obj.modTime, err = smithytime.ParseDateTime(string(v))
	}
	return err == nil
}

// nameLen is the length of the element name at the start of b: bytes of
// ASCII letters, digits, '_', '.' and '-', which encoding/xml reads as a
// name of its own. A name that goes on with other bytes (':', non-ASCII)
// has length 0: not for this parser.
func nameLen(b []byte) int {
	n := 0
	for n < len(b) {
		c := b[n]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-' {
			n++
			continue
		}
		if c == ':' || c >= utf8.RuneSelf {
			return 0
		}
		break
	}
	return n
}

func isXMLSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// xmlText checks character data as encoding/xml does (UTF-8, characters
// XML allows, references to the five predefined entities and to
// characters, no "]]>") and returns it decoded: raw itself when it has no
// reference, else in *scratch (valid until the next call). Text with a
// carriage return, which encoding/xml rewrites, is not for this parser
// (false), nor is anything encoding/xml refuses.
func xmlText(raw []byte, scratch *[]byte) ([]byte, bool) {
	plain := true
	for k, c := range raw {
		switch {
		case c == '&' || c >= utf8.RuneSelf:
			plain = false
		case c < 0x20 && c != '\t' && c != '\n':
			return nil, false
		case c == '>' && k >= 2 && raw[k-1] == ']' && raw[k-2] == ']':
			return nil, false
		}
	}
	if plain {
		return raw, true
	}
	out := (*scratch)[:0]
	for k := 0; k < len(raw); {
		c := raw[k]
		if c != '&' {
			out = append(out, c)
			k++
			continue
		}
		end := bytes.IndexByte(raw[k:], ';')
		if end < 0 {
			return nil, false
		}
		ref := raw[k+1 : k+end]
		k += end + 1
		switch string(ref) {
		case "lt":
			out = append(out, '<')
		case "gt":
			out = append(out, '>')
		case "amp":
			out = append(out, '&')
		case "apos":
			out = append(out, '\'')
		case "quot":
			out = append(out, '"')
		default:
			r, ok := charRef(ref)
			if !ok {
				return nil, false
			}
			out = utf8.AppendRune(out, r)
		}
	}
	*scratch = out
	for k := 0; k < len(out); {
		r, size := utf8.DecodeRune(out[k:])
		if r == utf8.RuneError && size == 1 || !inXMLRange(r) {
			return nil, false
		}
		k += size
	}
	return out, true
}

// charRef decodes the body of a character reference (&#...;) as
// encoding/xml does: decimal, or hexadecimal after a lowercase x, at most
// unicode.MaxRune (a surrogate becomes U+FFFD, as string(rune) makes it).
func charRef(ref []byte) (rune, bool) {
	if len(ref) < 2 || ref[0] != '#' {
		return 0, false
	}
	digits, base := ref[1:], 10
	if digits[0] == 'x' {
		digits, base = digits[1:], 16
	}
	if len(digits) == 0 {
		return 0, false
	}
	var n uint64
	for _, c := range digits {
		var v byte
		switch {
		case '0' <= c && c <= '9':
			v = c - '0'
		case base == 16 && 'a' <= c && c <= 'f':
			v = c - 'a' + 10
		case base == 16 && 'A' <= c && c <= 'F':
			v = c - 'A' + 10
		default:
			return 0, false
		}
		n = n*uint64(base) + uint64(v)
		if n > unicode.MaxRune {
			return 0, false
		}
	}
	if 0xD800 <= n && n <= 0xDFFF {
		return utf8.RuneError, true
	}
	return rune(n), true
}

// inXMLRange is XML's Char production, as encoding/xml checks it.
func inXMLRange(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD ||
		r >= 0x10000 && r <= 0x10FFFF
}
