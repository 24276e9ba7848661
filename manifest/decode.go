package manifest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
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
			case "done":
				r.Kind = string(v)
			case "workflow":
				r.Workflow = string(v)
			case "selection":
				r.Selection = string(v)
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
			case "artifacts":
				r.Artifacts = n
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

// Markers of the snapshot layout snapshotReader writes: the entries start
// after a comma that ends the header's last line, then a line that opens
// them; and they end with a line that closes them, then one that closes the
// document.
const (
	snapshotEntriesStart = ",\n" + entriesOpen + "\n"
	snapshotEntriesEnd   = "\n" + entriesClose + "\n}\n"
	entriesOpen          = `  "entries": [`
	entriesClose         = "  ]"
)

// errOtherLayout says that a snapshot is not in the layout snapshotReader
// writes; decodeSnapshot then decodes it as a whole.
var errOtherLayout = errors.New("not the layout this package writes")

// readSnapshot parses and checks the snapshot that r yields, in the layout
// snapshotReader writes, and calls add with each entry in order; loc names
// it in errors. Entries are decoded on all CPUs, a batch of lines at a time,
// which is many times faster than decoding the document as a whole, and
// holds a few batches, never the file.
//
// It returns errOtherLayout, having called add for some entries or none,
// if r holds anything else, down to a line the fast decoder does not take;
// the result of decodeSnapshot is then the answer. Otherwise it gives the
// same answer decodeSnapshot would, checks in the same order included: the
// header first, then each entry.
func readSnapshot(loc string, r io.Reader, destination string, add func(*record)) (*snapshotHeader, error) {
	lr := newLineReader(r)
	// The header is every line before the one that opens the entries, the
	// comma that ends it left out.
	var header []byte
	for {
		line, complete, err := lr.next()
		if err != nil && err != io.EOF {
			return nil, readError(loc, err)
		}
		if err == io.EOF || !complete {
			return nil, errOtherLayout
		}
		if string(line) == entriesOpen && bytes.HasSuffix(header, []byte(",\n")) {
			// The comma must end a member: "{," is no header, though
			// "{" plus "}" would parse.
			if before := bytes.TrimRight(header[:len(header)-2], " \t\r\n"); len(before) == 0 || before[len(before)-1] == '{' || before[len(before)-1] == ',' {
				return nil, errOtherLayout
			}
			header = append(header[:len(header)-2], "\n}"...)
			break
		}
		header = append(append(header, line...), '\n')
	}
	var h snapshotHeader
	if json.Unmarshal(header, &h) != nil {
		return nil, errOtherLayout
	}
	d := newSnapshotDecoder(add)
	err := d.run(lr)
	if err != nil {
		if err != errOtherLayout {
			err = readError(loc, err)
		}
		return nil, err
	}
	if err := checkHeader(loc, h.Format, h.Destination, destination); err != nil {
		return nil, err
	}
	if d.problem != "" {
		return nil, corruptError(loc, d.problem)
	}
	return &h, nil
}

// snapshotBatch is a run of entry lines, then their records.
type snapshotBatch struct {
	buf     []byte // the lines, without indent, comma or newline
	ends    []int  // where each line ends in buf
	recs    []record
	decoded chan struct{} // closed when recs are decoded, or failed is
	failed  bool          // a line did not decode
}

const (
	snapshotBatchBytes = 256 << 10
	snapshotBatchLines = 1024
)

// snapshotDecoder decodes the entries of a snapshot in a pipeline: the
// caller reads batches of lines, workers decode them, and an applier checks
// their records and passes them to add, in order.
type snapshotDecoder struct {
	add     func(*record)
	free    chan *snapshotBatch // batches to reuse
	made    int                 // batches made, at most cap(free)
	failed  atomic.Bool         // a batch did not decode
	problem string              // the first entry that checkEntry refuses, for the message
	entries int                 // entries passed to add or refused so far
}

func newSnapshotDecoder(add func(*record)) *snapshotDecoder {
	return &snapshotDecoder{add: add, free: make(chan *snapshotBatch, 2*runtime.GOMAXPROCS(0)+1)}
}

func (d *snapshotDecoder) batch() *snapshotBatch {
	select {
	case b := <-d.free:
		return b
	default:
	}
	if d.made < cap(d.free) {
		d.made++
		return &snapshotBatch{buf: make([]byte, 0, snapshotBatchBytes+4<<10)}
	}
	return <-d.free
}

// run reads the entry lines of lr up to the end of the document and
// decodes them. It returns errOtherLayout if the lines are not as
// snapshotReader writes them, or a read error.
func (d *snapshotDecoder) run(lr *lineReader) error {
	workers := runtime.GOMAXPROCS(0)
	work := make(chan *snapshotBatch, workers)
	ordered := make(chan *snapshotBatch, cap(d.free))
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for b := range work {
				b.decode()
			}
		})
	}
	applied := make(chan struct{})
	go func() {
		defer close(applied)
		for b := range ordered {
			<-b.decoded
			if b.failed {
				d.failed.Store(true)
			}
			if !d.failed.Load() {
				d.apply(b)
			}
			d.free <- b
		}
	}()

	err := d.read(lr, work, ordered)
	close(work)
	close(ordered)
	wg.Wait()
	<-applied
	if err == nil && d.failed.Load() {
		err = errOtherLayout
	}
	return err
}

// read sends batches of entry lines to work and, in the same order, to
// ordered, until the line that closes the entries.
func (d *snapshotDecoder) read(lr *lineReader, work, ordered chan<- *snapshotBatch) error {
	var b *snapshotBatch
	send := func() {
		if b != nil && len(b.ends) > 0 {
			b.decoded = make(chan struct{})
			ordered <- b
			work <- b
		}
		b = nil
	}
	defer send()
	lines := 0
	last := false // an entry line without a comma must be the last
	for !d.failed.Load() {
		line, complete, err := lr.next()
		switch {
		case err == io.EOF || err == nil && !complete:
			return errOtherLayout
		case err != nil:
			return err
		}
		if string(line) == entriesClose {
			if lines > 0 && !last {
				return errOtherLayout
			}
			return expectEnd(lr)
		}
		if !bytes.HasPrefix(line, []byte("    {")) || last {
			return errOtherLayout
		}
		entry, comma := bytes.CutSuffix(line[4:], []byte(","))
		last = !comma
		lines++
		if b == nil {
			b = d.batch()
		}
		b.buf = append(b.buf, entry...)
		b.ends = append(b.ends, len(b.buf))
		if len(b.buf) >= snapshotBatchBytes || len(b.ends) >= snapshotBatchLines {
			send()
		}
	}
	return nil
}

// expectEnd reads what follows the entries: the line that closes the
// document, then nothing.
func expectEnd(lr *lineReader) error {
	line, complete, err := lr.next()
	if err != nil && err != io.EOF {
		return err
	}
	if err == io.EOF || !complete || string(line) != "}" {
		return errOtherLayout
	}
	switch _, _, err = lr.next(); err {
	case io.EOF:
		return nil
	case nil:
		return errOtherLayout
	default:
		return err
	}
}

// decode decodes b's lines into b.recs, or sets b.failed.
func (b *snapshotBatch) decode() {
	defer close(b.decoded)
	b.recs = slices.Grow(b.recs[:0], len(b.ends))[:len(b.ends)]
	start := 0
	for i, end := range b.ends {
		if decodeRecord(b.buf[start:end], &b.recs[i]) != nil {
			b.failed = true
			return
		}
		start = end
	}
}

// apply checks b's records and adds them, then empties b for reuse.
func (d *snapshotDecoder) apply(b *snapshotBatch) {
	for i := range b.recs {
		r := &b.recs[i]
		if p := checkSnapshotEntry(d.entries, r); p != "" {
			if d.problem == "" {
				d.problem = p
			}
		} else if d.problem == "" {
			d.add(r)
		}
		d.entries++
	}
	clear(b.recs) // drop the strings: the table has its own copy
	b.buf, b.ends, b.recs, b.failed = b.buf[:0], b.ends[:0], b.recs[:0], false
}

// lineReader reads lines from a stream.
type lineReader struct {
	r    *bufio.Reader
	long []byte // a line longer than r's buffer
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, 64<<10)}
}

// next returns the next line, without its newline, and whether it had one
// (only the last line may not). The line is valid until the next call. At
// the end of the stream it returns io.EOF.
func (l *lineReader) next() (line []byte, complete bool, err error) {
	line, err = l.r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		l.long = append(l.long[:0], line...)
		for err == bufio.ErrBufferFull {
			line, err = l.r.ReadSlice('\n')
			l.long = append(l.long, line...)
		}
		line = l.long
	}
	switch {
	case err == nil:
		return line[:len(line)-1], true, nil
	case err == io.EOF && len(line) > 0:
		return line, false, nil
	}
	return nil, false, err
}
