package manifest

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"slices"
	"strings"
	"sync"
	"time"
)

// ID identifies an artifact at its source.
type ID struct {
	Project   string // project slug, e.g. "gh/org/repo"
	JobNumber int64
	NodeIndex int64
	Path      string // the artifact's path as CircleCI reports it
}

// String describes id for messages: project job 12 node 0 "dist/app.tgz".
func (id ID) String() string {
	return fmt.Sprintf("%s job %d node %d %q", id.Project, id.JobNumber, id.NodeIndex, id.Path)
}

// Entry records one completed transfer. Size and SHA256 are what was
// written to the destination, so that a later run can check the copy
// there without trusting the manifest blindly.
type Entry struct {
	ID
	Key          string    // destination key the artifact was written to
	Size         int64     // bytes written
	SHA256       string    // lowercase hex SHA-256 of the bytes, computed while streaming
	ETag         string    // the source's ETag, when it sent one
	LastModified string    // the source's Last-Modified, when it sent one
	Completed    time.Time // when the transfer finished; Record sets it if zero
	Run          string    // the run that recorded it; Record sets it if empty
}

// Options configure Open. The zero value of each field means its default.
type Options struct {
	// Destination names the destination the manifest describes (a path or
	// s3://bucket/prefix). Required; a manifest that records another
	// destination is refused with ErrDestination. SelfDestination says the
	// manifest is kept inside the destination it describes.
	Destination string
	// ToolVersion is written to every file for the humans reading it.
	ToolVersion string
	// Run names this run in file names and entries: letters, digits, '.',
	// '_' and '-', at most 64 bytes. Default: the time and a random suffix.
	// A run name should not be reused while its journals are still around.
	Run string
	// FlushInterval bounds how long a recorded entry waits before it is
	// written to the store. Default 1s.
	FlushInterval time.Duration
	// FlushEntries starts a flush early when this many records wait.
	// Default 1000.
	FlushEntries int
	// MaxJournals is how many journal files may accumulate before a flush
	// also writes a new snapshot and removes them. Default 64.
	MaxJournals int
	// Now returns the current time. Default time.Now.
	Now func() time.Time
	// Durable, if set, makes durable the data that recorded entries name,
	// for a destination that leaves its fsyncs to batches: it is called
	// before each journal or snapshot write, after the entries that write
	// holds were taken, so no entry reaches the store before its data is
	// durable. Its error fails that write, and more: the data of the
	// entries that write took may be lost, and trying again would prove
	// nothing (a flush after a failed one succeeds though the data is
	// gone), so those entries are removed, as by Remove, instead of
	// waiting for the next write. The caller, told by its Durable which
	// data was lost, removes the entries recorded since then likewise.
	Durable func(ctx context.Context) error
	// Rebuild says what Open does with a snapshot that cannot be read at
	// all, as a power cut can leave it. Default RefuseUnreadable.
	Rebuild RebuildMode
}

const (
	defaultFlushInterval = time.Second
	defaultFlushEntries  = 1000
	defaultMaxJournals   = 64
	maxRunLen            = 64
	readConcurrency      = 8
)

// Manifest is the record of completed transfers to one destination. Its
// methods are safe for concurrent use.
type Manifest struct {
	st   Store
	opts Options

	// Guarded by flushMu, which serialises all writes to the store.
	flushMu  sync.Mutex
	gen      int64     // generation of this run's journals
	seq      int64     // last journal sequence number this run used
	created  time.Time // when the manifest was first written; zero if unknown
	journals []string  // journals in the store that the snapshot lacks
	merged   []string  // journals in the store that the snapshot already holds
	cleanErr error     // failure to remove merged journals

	mu       sync.RWMutex
	t        *table
	pending  []uint32 // slots recorded since the last journal was written
	dirty    bool     // recorded or removed anything since Open
	err      error    // the last flush's failure, until one succeeds
	closed   bool
	closeErr error
	kick     chan struct{} // asks the flusher to flush now
	stop     chan struct{} // closed by Close; nil until the flusher starts
	done     chan struct{} // closed when the flusher has exited
	cancel   context.CancelFunc

	// Guarded by mu: the done marks (done.go), and those made since the
	// last journal was written, which the next one writes after its
	// entries.
	marks       doneSet
	pendingDone []Done

	// Set by load when it rebuilt an unreadable snapshot (rebuild.go).
	rebuilt    *Rebuilt
	unreadable []byte // the snapshot's bytes, until they are kept aside
}

// SelfDestination, as Options.Destination, says that the manifest lives
// inside the destination it describes (DEST/.artifact-sync/manifest). It is
// recorded instead of the destination's path, so a mirror copied or moved
// elsewhere (cp -a, mv, an S3 prefix copied) keeps its manifest usable. Either
// side may say it: opened with SelfDestination, a manifest that records a
// path (written before, or copied with its destination) is accepted and
// records SelfDestination once rewritten; one that records SelfDestination
// is accepted whatever destination it is opened for.
const SelfDestination = "."

// NewRun names a run started at now: its UTC time and 8 random hex digits,
// e.g. 20261130T052841Z-1a2b3c4d, which sorts by time and fits a file name.
func NewRun(now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// Open loads the manifest kept in st, or starts an empty one if st holds
// none; nothing is written until something is recorded. Open fails with an
// *Error if a file is corrupt (ErrCorrupt), of a newer format (ErrVersion)
// or for another destination (ErrDestination); it never replaces such a
// manifest. A snapshot that cannot be read at all is refused as corrupt or
// rebuilt, as Options.Rebuild says; Rebuilt then reports it.
func Open(ctx context.Context, st Store, opts Options) (*Manifest, error) {
	if opts.Destination == "" {
		return nil, errors.New("manifest: Options.Destination is required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Run == "" {
		opts.Run = NewRun(opts.Now())
	}
	if len(opts.Run) > maxRunLen || !validName(opts.Run) || strings.HasPrefix(opts.Run, ".") {
		return nil, fmt.Errorf("manifest: run name %q: use at most %d letters, digits, '.', '_' or '-'", opts.Run, maxRunLen)
	}
	if opts.ToolVersion == "" {
		opts.ToolVersion = "artifact-sync"
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = defaultFlushInterval
	}
	if opts.FlushEntries <= 0 {
		opts.FlushEntries = defaultFlushEntries
	}
	if opts.MaxJournals <= 0 {
		opts.MaxJournals = defaultMaxJournals
	}
	m := &Manifest{
		st:   st,
		opts: opts,
		t:    newTable(),
		kick: make(chan struct{}, 1),
	}
	if err := m.load(ctx); err != nil {
		return nil, err
	}
	return m, nil
}

// loadedJournal is a journal file read by load.
type loadedJournal struct {
	name  string
	run   string
	seq   int64
	hdr   *journalHeader // nil for a journal torn before its header ended
	slots []uint32       // its records, in order
	marks []Done         // its done records
	err   error
}

func (m *Manifest) load(ctx context.Context) error {
	names, err := m.st.List(ctx)
	if err != nil {
		return &Error{Location: m.st.String(), Problem: "cannot list files: " + err.Error(), Err: err}
	}

	snap, err := m.loadSnapshot(ctx)
	if err != nil {
		return err
	}
	included := make(map[string]bool)
	if snap != nil {
		for _, name := range snap.Journals {
			included[name] = true
			m.noteSeq(name)
		}
		m.gen = snap.Generation
		m.created = snap.Created
	}

	var toRead []*loadedJournal
	for _, name := range names {
		run, seq, ok := parseJournalName(name)
		if !ok {
			continue
		}
		m.noteSeq(name)
		if included[name] {
			m.merged = append(m.merged, name)
			continue
		}
		toRead = append(toRead, &loadedJournal{name: name, run: run, seq: seq})
	}
	m.readJournals(ctx, toRead)

	// Apply in log order: the snapshot, then journals by generation, run and
	// sequence, each line in order; the later record for an ID wins.
	slices.SortFunc(toRead, func(a, b *loadedJournal) int {
		return cmp.Or(
			cmp.Compare(a.generation(), b.generation()),
			strings.Compare(a.run, b.run),
			cmp.Compare(a.seq, b.seq),
			strings.Compare(a.name, b.name),
		)
	})
	for _, j := range toRead {
		if j.err != nil {
			return j.err
		}
	}
	for _, j := range toRead {
		m.journals = append(m.journals, j.name)
		if j.hdr == nil {
			continue
		}
		m.gen = max(m.gen, j.hdr.Generation)
		if !j.hdr.Written.IsZero() && (m.created.IsZero() || j.hdr.Written.Before(m.created)) {
			m.created = j.hdr.Written
		}
		for _, i := range j.slots {
			if s := m.t.slot(i); s.flags&slotRemoved != 0 {
				m.t.remove(m.t.id(s))
			} else {
				m.t.set(i)
			}
		}
		for _, d := range j.marks {
			m.marks.add(d)
		}
	}
	m.gen++ // this run's journals order after everything it loaded
	if m.rebuilt != nil {
		return m.finishRebuild(ctx, toRead)
	}
	return nil
}

// loadSnapshot reads the snapshot into m.t as a stream, or as a whole if
// it is not in the layout this package writes. It returns nil if there is
// none.
func (m *Manifest) loadSnapshot(ctx context.Context) (*snapshotHeader, error) {
	loc := location(m.st, snapshotName)
	rc, err := OpenFile(ctx, m.st, snapshotName)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, readError(loc, err)
	}
	h, err := readSnapshot(loc, rc, m.opts.Destination, m.loadRecord)
	rc.Close()
	if err != errOtherLayout {
		return h, err
	}
	m.t, m.marks = newTable(), doneSet{}
	data, err := m.st.ReadFile(ctx, snapshotName)
	if err != nil {
		return nil, readError(loc, err)
	}
	h, recs, err := decodeSnapshot(loc, data, m.opts.Destination)
	if unreadable(data, err) {
		return m.rebuildSnapshot(loc, data, err)
	}
	if err != nil {
		return nil, err
	}
	for i := range recs {
		m.loadRecord(&recs[i])
	}
	return h, nil
}

// loadRecord takes in r, a record of a snapshot: an entry or a done mark.
func (m *Manifest) loadRecord(r *record) {
	if r.Kind != "" {
		m.marks.add(r.done())
		return
	}
	m.t.set(m.t.add(newSlot(&r.Entry, time.Time{}), r.Project, r.Run))
}

func (j *loadedJournal) generation() int64 {
	if j.hdr == nil {
		return 0
	}
	return j.hdr.Generation
}

// readJournals reads and decodes journals a few at a time, since a remote
// store's latency, not bandwidth, dominates. Their records go into m.t as
// slots, which load then applies in log order.
func (m *Manifest) readJournals(ctx context.Context, js []*loadedJournal) {
	sem := make(chan struct{}, readConcurrency)
	var (
		wg sync.WaitGroup
		mu sync.Mutex // guards m.t
	)
	for _, j := range js {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			loc := location(m.st, j.name)
			rc, err := OpenFile(ctx, m.st, j.name)
			if errors.Is(err, fs.ErrNotExist) {
				return // removed since List: it was merged into the snapshot
			}
			if err != nil {
				j.err = readError(loc, err)
				return
			}
			defer rc.Close()
			j.hdr, j.err = readJournal(loc, rc, m.opts.Destination, func(r *record) {
				if r.Kind != "" {
					j.marks = append(j.marks, r.done())
					return
				}
				s := newSlot(&r.Entry, r.Removed)
				mu.Lock()
				j.slots = append(j.slots, m.t.add(s, r.Project, r.Run))
				mu.Unlock()
			})
			if j.err != nil {
				j.hdr, j.slots, j.marks = nil, nil, nil
			}
		})
	}
	wg.Wait()
}

// noteSeq makes sure this run never reuses the file name of one of its
// earlier journals.
func (m *Manifest) noteSeq(name string) {
	if run, seq, ok := parseJournalName(name); ok && run == m.opts.Run {
		m.seq = max(m.seq, seq)
	}
}

// Lookup returns the entry recorded for id.
func (m *Manifest) Lookup(id ID) (Entry, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	s, ok := m.t.lookup(id)
	if !ok {
		return Entry{}, false
	}
	return slotEntry(s, m.t.names), true
}

// Len reports the number of entries.
func (m *Manifest) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.t.live
}

// Entries yields every entry, sorted by project, job number, node index and
// path. It iterates over the entries as they were when it started, so it
// may run alongside Record.
func (m *Manifest) Entries() iter.Seq[Entry] {
	return func(yield func(Entry) bool) {
		v, order := m.sorted()
		for _, i := range order {
			if !yield(v.entry(i)) {
				return
			}
		}
	}
}

// sorted returns a view of the table and the slots of its entries, sorted
// by ID.
func (m *Manifest) sorted() (view, []uint32) {
	m.mu.RLock()
	v, order := m.t.view(), m.t.entries()
	m.mu.RUnlock()
	v.sort(order)
	return v, order
}

// Record adds e, replacing any entry for the same ID. It only updates
// memory; a background flusher writes it to the store within
// Options.FlushInterval (sooner when Options.FlushEntries records wait).
//
// Record returns an error only if e is invalid (nothing is recorded) or
// after Close (ErrClosed). A failed flush does not fail later records: what
// it could not write stays pending for the next flush, and Flush and Close
// report whether everything reached the store.
func (m *Manifest) Record(e Entry) error {
	if e.Completed.IsZero() {
		e.Completed = m.opts.Now()
	}
	e.Completed = e.Completed.UTC()
	if e.Run == "" {
		e.Run = m.opts.Run
	}
	if p := checkEntry(e); p != "" {
		return fmt.Errorf("manifest: record %v: %s", e.ID, p)
	}
	s := newSlot(&e, time.Time{})
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	i := m.t.add(s, e.Project, e.Run)
	m.t.set(i)
	m.pending = append(m.pending, i)
	m.dirty = true
	m.startFlusher()
	n := len(m.pending)
	m.mu.Unlock()
	if n >= m.opts.FlushEntries {
		select {
		case m.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// Remove forgets the entry for id, if any, so that the artifact counts as
// not transferred (for verify, or to force a transfer). The removal is
// written like a record.
func (m *Manifest) Remove(id ID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	if !m.t.remove(id) {
		return
	}
	s := newSlot(&Entry{ID: id}, m.opts.Now().UTC())
	m.pending = append(m.pending, m.t.add(s, id.Project, m.opts.Run))
	m.dirty = true
	m.startFlusher()
}

// startFlusher starts the background flusher once. m.mu must be held.
func (m *Manifest) startFlusher() {
	if m.stop != nil {
		return
	}
	m.stop = make(chan struct{})
	m.done = make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go m.flushLoop(ctx, m.stop, m.done)
}

func (m *Manifest) flushLoop(ctx context.Context, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(m.opts.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		case <-m.kick:
		}
		_ = m.flush(ctx) // a failure is kept in m.err for Record and Close
	}
}

// Flush writes everything recorded so far to the store and returns when it
// is durable.
func (m *Manifest) Flush(ctx context.Context) error {
	m.mu.RLock()
	closed := m.closed
	m.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	return m.flush(ctx)
}

func (m *Manifest) flush(ctx context.Context) error {
	m.flushMu.Lock()
	defer m.flushMu.Unlock()

	m.mu.Lock()
	recs, marks := m.pending, m.pendingDone
	m.pending, m.pendingDone = nil, nil
	dirty := m.dirty
	v := m.t.view() // holds every slot in recs
	m.mu.Unlock()

	err := m.writeJournal(ctx, v, recs, marks)
	if err != nil {
		// A mark stands for entries a reader checks, so it is written
		// again whatever became of them.
		m.mu.Lock()
		m.pendingDone = append(marks, m.pendingDone...)
		m.mu.Unlock()
	}
	var lost *notDurableError
	if errors.As(err, &lost) {
		m.forget(v, recs)
	} else if err != nil {
		m.mu.Lock()
		m.pending = append(recs, m.pending...)
		m.mu.Unlock()
	} else if dirty && len(m.journals) > m.opts.MaxJournals {
		err = m.compact(ctx)
	}
	m.mu.Lock()
	m.err = err
	m.mu.Unlock()
	return err
}

// writeJournal writes the records in slots recs of v, then the marks, as
// this run's next journal. m.flushMu must be held.
func (m *Manifest) writeJournal(ctx context.Context, v view, recs []uint32, marks []Done) error {
	if len(recs) == 0 && len(marks) == 0 {
		return nil
	}
	name := journalName(m.opts.Run, m.seq+1)
	loc := location(m.st, name)
	if err := m.durable(ctx); err != nil {
		return &Error{Location: loc, Problem: "cannot make the files it records durable: " + err.Error(), Err: &notDurableError{err}}
	}
	m.seq++
	data, err := encodeJournalFunc(journalHeader{
		Format:      formatVersion,
		Tool:        m.opts.ToolVersion,
		Destination: m.opts.Destination,
		Run:         m.opts.Run,
		Generation:  m.gen,
		Seq:         m.seq,
		Written:     m.opts.Now().UTC(),
	}, len(recs)+len(marks), func(b []byte, i int) []byte {
		if i >= len(recs) {
			return appendDone(b, &marks[i-len(recs)])
		}
		r, sum := v.recordSum(recs[i])
		return appendRecordSum(b, r, sum)
	})
	if err != nil {
		return &Error{Location: loc, Problem: "cannot encode: " + err.Error(), Err: err}
	}
	if err := m.st.WriteFile(ctx, name, data); err != nil {
		return &Error{Location: loc, Problem: "cannot write: " + err.Error(), Err: err}
	}
	m.journals = append(m.journals, name)
	return nil
}

// notDurableError is a failure of Options.Durable: the data of the
// entries the write took may be lost.
type notDurableError struct{ err error }

func (e *notDurableError) Error() string { return e.err.Error() }
func (e *notDurableError) Unwrap() error { return e.err }

// forget removes the entries of slots recs of v, whose data a failed
// Options.Durable may have lost, unless a later record replaced them;
// the removals are written like records, so an older entry for the same
// ID in the store is dropped too. m.flushMu must be held.
func (m *Manifest) forget(v view, recs []uint32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.opts.Now().UTC()
	for _, i := range recs {
		s := v.slot(i)
		if s.flags&slotRemoved != 0 {
			m.pending = append(m.pending, i) // a removal is no data: it stands
			continue
		}
		id := m.t.id(s)
		if cur, ok := m.t.lookup(id); !ok || cur != s {
			continue // removed or recorded again since
		}
		m.t.remove(id)
		m.pending = append(m.pending, m.t.add(newSlot(&Entry{ID: id}, now), id.Project, m.opts.Run))
	}
	m.dirty = true
}

// durable calls Options.Durable.
func (m *Manifest) durable(ctx context.Context) error {
	if m.opts.Durable == nil {
		return nil
	}
	return m.opts.Durable(ctx)
}

// compact writes a snapshot of every entry, naming the journals it
// includes, then removes those journals. m.flushMu must be held.
//
// The snapshot may hold records that no journal has yet; that is harmless,
// as the journal that later holds them repeats them in the same order.
func (m *Manifest) compact(ctx context.Context) error {
	now := m.opts.Now().UTC()
	if m.created.IsZero() {
		m.created = now
	}
	names := slices.Concat(m.merged, m.journals)
	slices.Sort(names)
	loc := location(m.st, snapshotName)
	v, order := m.sorted()
	m.mu.RLock()
	marks := m.marks.sorted()
	m.mu.RUnlock()
	if err := m.durable(ctx); err != nil {
		return &Error{Location: loc, Problem: "cannot make the files it records durable: " + err.Error(), Err: err}
	}
	r, err := newSnapshotReader(snapshotHeader{
		Format:      formatVersion,
		Tool:        m.opts.ToolVersion,
		Destination: m.opts.Destination,
		Created:     m.created,
		Updated:     now,
		Run:         m.opts.Run,
		Generation:  m.gen,
		Journals:    names,
	}, func(b []byte) ([]byte, bool) {
		if len(order) == 0 {
			// The marks follow the entries, which they stand for.
			if len(marks) == 0 {
				return b, false
			}
			b = appendDone(b, &marks[0])
			marks = marks[1:]
			return b, true
		}
		r, sum := v.recordSum(order[0])
		order = order[1:]
		return appendRecordSum(b, r, sum), true
	})
	if err != nil {
		return &Error{Location: loc, Problem: "cannot encode: " + err.Error(), Err: err}
	}
	if err := m.writeLarge(ctx, snapshotName, r); err != nil {
		return &Error{Location: loc, Problem: "cannot write: " + err.Error(), Err: err}
	}
	// From here on the journals are redundant; failing to remove one only
	// leaves it for the next compaction.
	failed, errs := removeAll(ctx, m.st, names)
	for i, err := range errs {
		errs[i] = &Error{Location: location(m.st, failed[i]), Problem: "cannot remove merged journal: " + err.Error(), Err: err}
	}
	m.merged, m.journals = failed, nil
	m.cleanErr = errors.Join(errs...)
	return nil
}

// streamAbove is the size above which a file is written to a store that can
// take a stream (WriteFromStore) as it is encoded; a smaller one is encoded
// whole and written with WriteFile, which suits small objects better (S3: a
// single PUT of known size).
const streamAbove = 1 << 20

// writeLarge writes the file name from r, which encodes it.
func (m *Manifest) writeLarge(ctx context.Context, name string, r io.Reader) error {
	head, err := io.ReadAll(io.LimitReader(r, streamAbove+1))
	if err != nil {
		return err
	}
	if len(head) <= streamAbove {
		return m.st.WriteFile(ctx, name, head)
	}
	return WriteFileFrom(ctx, m.st, name, io.MultiReader(bytes.NewReader(head), r))
}

// Close writes what is pending, then, if anything was recorded or removed
// since Open, a new snapshot that replaces the journals. It returns nil
// only if everything recorded is durable. A manifest in which nothing
// changed is left as it was, so a read-only store is fine for lookups.
// Close stops the background flusher; later calls to Record return
// ErrClosed.
func (m *Manifest) Close(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		err := m.closeErr
		m.mu.Unlock()
		return err
	}
	m.closed = true
	stop, done, cancel := m.stop, m.done, m.cancel
	m.mu.Unlock()
	if stop != nil {
		close(stop)
		cancel() // abandon an in-flight background write; it is retried below
		<-done
	}

	err := m.closeWrite(ctx)
	m.mu.Lock()
	m.closeErr = err
	m.mu.Unlock()
	return err
}

func (m *Manifest) closeWrite(ctx context.Context) error {
	flushErr := m.flush(ctx)
	m.mu.RLock()
	dirty := m.dirty
	m.mu.RUnlock()
	if !dirty {
		return flushErr
	}

	m.flushMu.Lock()
	defer m.flushMu.Unlock()
	if flushErr == nil && len(m.journals) == 0 && len(m.merged) == 0 {
		return m.cleanErr // the flush just compacted
	}
	// Even if the journal could not be written, a snapshot holds every
	// entry, so it makes up for it.
	if err := m.compact(ctx); err != nil {
		return errors.Join(flushErr, err)
	}
	return m.cleanErr
}

// checkEntry returns what is wrong with e, or "".
func checkEntry(e Entry) string {
	if p := checkID(e.ID); p != "" {
		return p
	}
	switch {
	case e.Size < 0:
		return fmt.Sprintf("negative size %d", e.Size)
	case e.SHA256 != "" && !isSHA256(e.SHA256):
		return fmt.Sprintf("sha256 %q is not 64 lowercase hex digits", e.SHA256)
	case e.Completed.IsZero():
		return "no completion time"
	case e.Completed.Year() < 0 || e.Completed.Year() > 9999:
		return fmt.Sprintf("completion time %v is outside years 0 to 9999", e.Completed)
	}
	return ""
}

func checkID(id ID) string {
	switch {
	case id.Project == "":
		return "no project"
	case id.Path == "":
		return "no path"
	}
	return ""
}

func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
