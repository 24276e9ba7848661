package manifest

import (
	"cmp"
	"hash/maphash"
	"slices"
	"strings"
	"time"
)

// table is the manifest in memory: every record made or loaded since Open,
// each in one slot, and an index from each ID to the slot of its entry.
//
// It is built to stay small at a hundred thousand entries and more: a slot
// keeps an entry's strings in one allocation (the key and the path share
// their bytes when the key ends with the path, as layouts usually make it;
// the SHA-256 as its 32 bytes), projects and run names once for all
// entries, times as integers; the index is an open-addressing table of slot
// numbers rather than a map of IDs to entries.
//
// A slot is written once and never changed or moved: a new record for an
// ID takes a new slot, and the index forgets the old one. So a view taken
// under the manifest's lock stays valid after the lock is released, and
// readers (Entries, journal and snapshot encoding) use it without holding
// the lock while Record goes on. The cost is that slots replaced during a
// run stay until the Manifest is dropped: at most one per record made.
//
// table is not safe for concurrent use; Manifest guards it with its lock.
type table struct {
	seed   maphash.Seed
	chunks []*[chunkSlots]slot // slot i is chunks[i/chunkSlots][i%chunkSlots]
	n      uint32              // slots written
	index  []uint64            // 0: empty; else hash tag << 32 | slot number + 1; linear probing
	live   int                 // entries in index
	names  []string            // projects and run names, by number
	byName map[string]uint32
}

const chunkSlots = 1024

// slot flags.
const (
	slotRemoved   = 1 << iota // a removal record; sec and nsec say when
	slotSum                   // data ends with the 32 bytes of the SHA-256
	slotPathInKey             // the path is the end of the key
)

// slot is one record. data holds the key, the path unless the key ends
// with it, the ETag, the Last-Modified and the SHA-256's bytes, in that
// order.
type slot struct {
	data      string
	job, node int64
	size      int64
	sec       int64 // Completed, or Removed for a removal, as Unix time
	nsec      int32
	flags     uint8
	project   uint32 // in table.names
	run       uint32 // in table.names
	keyLen    uint32
	pathLen   uint32
	etagLen   uint32
}

func newTable() *table {
	return &table{seed: maphash.MakeSeed(), byName: make(map[string]uint32)}
}

// newSlot builds the slot of e, or of the removal of e.ID at removed when
// that is not zero. Its project and run are filled in by table.add.
func newSlot(e *Entry, removed time.Time) slot {
	if !removed.IsZero() {
		// A removal keeps its ID and time only, as journals write it.
		return slot{job: e.JobNumber, node: e.NodeIndex, flags: slotRemoved,
			sec: removed.Unix(), nsec: int32(removed.Nanosecond()),
			data: e.Path, pathLen: uint32(len(e.Path))}
	}
	s := slot{job: e.JobNumber, node: e.NodeIndex, size: e.Size,
		sec: e.Completed.Unix(), nsec: int32(e.Completed.Nanosecond())}
	n := len(e.Key) + len(e.ETag) + len(e.LastModified)
	if strings.HasSuffix(e.Key, e.Path) {
		s.flags |= slotPathInKey
	} else {
		n += len(e.Path)
	}
	if len(e.SHA256) == 64 {
		s.flags |= slotSum
		n += 32
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(e.Key)
	if s.flags&slotPathInKey == 0 {
		b.WriteString(e.Path)
	}
	b.WriteString(e.ETag)
	b.WriteString(e.LastModified)
	if s.flags&slotSum != 0 {
		for i := 0; i < 64; i += 2 {
			b.WriteByte(unhex(e.SHA256[i])<<4 | unhex(e.SHA256[i+1]))
		}
	}
	s.data = b.String()
	s.keyLen, s.pathLen, s.etagLen = uint32(len(e.Key)), uint32(len(e.Path)), uint32(len(e.ETag))
	return s
}

// unhex is the value of a lowercase hex digit, which checkEntry ensures.
func unhex(c byte) byte {
	if c >= 'a' {
		return c - 'a' + 10
	}
	return c - '0'
}

func (s *slot) key() string { return s.data[:s.keyLen] }

func (s *slot) path() string {
	if s.flags&slotPathInKey != 0 {
		return s.data[s.keyLen-s.pathLen : s.keyLen]
	}
	return s.data[s.keyLen : s.keyLen+s.pathLen]
}

// headers returns the ETag, the Last-Modified and the SHA-256's bytes.
func (s *slot) headers() (etag, lastModified, sum string) {
	rest := s.data[s.keyLen:]
	if s.flags&slotPathInKey == 0 {
		rest = rest[s.pathLen:]
	}
	if s.flags&slotSum != 0 {
		rest, sum = rest[:len(rest)-32], rest[len(rest)-32:]
	}
	return rest[:s.etagLen], rest[s.etagLen:], sum
}

func (s *slot) time() time.Time {
	return time.Unix(s.sec, int64(s.nsec)).UTC()
}

// intern returns the number of name, adding it if new.
func (t *table) intern(name string) uint32 {
	if i, ok := t.byName[name]; ok {
		return i
	}
	i := uint32(len(t.names))
	t.names = append(t.names, name)
	t.byName[name] = i
	return i
}

// add stores s, a slot from newSlot for project and run, and returns its
// number. It does not change the index.
func (t *table) add(s slot, project, run string) uint32 {
	s.project, s.run = t.intern(project), t.intern(run)
	i := t.n
	if i%chunkSlots == 0 {
		t.chunks = append(t.chunks, new([chunkSlots]slot))
	}
	t.chunks[i/chunkSlots][i%chunkSlots] = s
	t.n++
	return i
}

func (t *table) slot(i uint32) *slot { return &t.chunks[i/chunkSlots][i%chunkSlots] }

func (t *table) id(s *slot) ID {
	return ID{Project: t.names[s.project], JobNumber: s.job, NodeIndex: s.node, Path: s.path()}
}

// hash hashes id's path, job number and node index; entries of one
// manifest rarely differ by project alone, which find compares anyway.
func (t *table) hash(id ID) uint64 {
	h := maphash.String(t.seed, id.Path)
	h ^= (uint64(id.JobNumber)*0x9e3779b97f4a7c15 + uint64(id.NodeIndex)) * 0xbf58476d1ce4e5b9
	return h ^ h>>29
}

// indexSlot is the slot number in an index value.
func indexSlot(v uint64) uint32 { return uint32(v) - 1 }

// find returns the position in index of id's entry, or of the empty place
// where it would go, whether it is there, and the index value its slot
// would have without the slot number.
func (t *table) find(id ID) (p int, ok bool, tag uint64) {
	h := t.hash(id)
	tag = h &^ (1<<32 - 1)
	if len(t.index) == 0 {
		return 0, false, tag
	}
	mask := len(t.index) - 1
	for p = int(h) & mask; ; p = (p + 1) & mask {
		v := t.index[p]
		if v == 0 {
			return p, false, tag
		}
		if v&^(1<<32-1) != tag {
			continue
		}
		if s := t.slot(indexSlot(v)); s.job == id.JobNumber && s.node == id.NodeIndex && s.path() == id.Path && t.names[s.project] == id.Project {
			return p, true, tag
		}
	}
}

// lookup returns the slot of id's entry.
func (t *table) lookup(id ID) (*slot, bool) {
	p, ok, _ := t.find(id)
	if !ok {
		return nil, false
	}
	return t.slot(indexSlot(t.index[p])), true
}

// set makes slot i, an entry, the one of its ID.
func (t *table) set(i uint32) {
	if (t.live+1)*4 > len(t.index)*3 {
		t.grow()
	}
	p, ok, tag := t.find(t.id(t.slot(i)))
	if !ok {
		t.live++
	}
	t.index[p] = tag | uint64(i+1)
}

// remove forgets the entry of id and reports whether there was one.
func (t *table) remove(id ID) bool {
	p, ok, _ := t.find(id)
	if !ok {
		return false
	}
	// Backward-shift deletion: move up the entries after p that probing
	// would no longer reach, so no tombstone is needed.
	mask := len(t.index) - 1
	for {
		t.index[p] = 0
		q := p
		for {
			q = (q + 1) & mask
			v := t.index[q]
			if v == 0 {
				t.live--
				return true
			}
			home := int(t.hash(t.id(t.slot(indexSlot(v))))) & mask
			// The entry at q stays if its home lies cyclically in (p, q].
			if p <= q && p < home && home <= q || p > q && (p < home || home <= q) {
				continue
			}
			t.index[p] = v
			p = q
			break
		}
	}
}

func (t *table) grow() {
	old := t.index
	t.index = make([]uint64, max(64, 2*len(old)))
	mask := len(t.index) - 1
	for _, v := range old {
		if v == 0 {
			continue
		}
		p := int(t.hash(t.id(t.slot(indexSlot(v))))) & mask
		for t.index[p] != 0 {
			p = (p + 1) & mask
		}
		t.index[p] = v
	}
}

// view is a read-only view of the slots written so far, usable without
// the manifest's lock.
type view struct {
	chunks []*[chunkSlots]slot
	names  []string
}

func (t *table) view() view { return view{chunks: t.chunks, names: t.names} }

// entries returns the slot numbers of every entry.
func (t *table) entries() []uint32 {
	out := make([]uint32, 0, t.live)
	for _, v := range t.index {
		if v != 0 {
			out = append(out, indexSlot(v))
		}
	}
	return out
}

func (v view) slot(i uint32) *slot { return &v.chunks[i/chunkSlots][i%chunkSlots] }

// sort orders slot numbers by project, job number, node index and path.
func (v view) sort(is []uint32) {
	slices.SortFunc(is, func(a, b uint32) int {
		sa, sb := v.slot(a), v.slot(b)
		if sa.project != sb.project {
			if c := strings.Compare(v.names[sa.project], v.names[sb.project]); c != 0 {
				return c
			}
		}
		return cmp.Or(
			cmp.Compare(sa.job, sb.job),
			cmp.Compare(sa.node, sb.node),
			strings.Compare(sa.path(), sb.path()),
		)
	})
}

// entry returns slot i as an Entry.
func (v view) entry(i uint32) Entry {
	return slotEntry(v.slot(i), v.names)
}

// recordSum returns slot i as a record without its SHA256, and the
// SHA-256's bytes ("" if none), for the encoders.
func (v view) recordSum(i uint32) (record, string) {
	return slotRecord(v.slot(i), v.names)
}

func slotEntry(s *slot, names []string) Entry {
	r, sum := slotRecord(s, names)
	if sum != "" {
		var b [64]byte
		r.SHA256 = string(appendHex(b[:0], sum))
	}
	return r.Entry
}

func slotRecord(s *slot, names []string) (record, string) {
	etag, lm, sum := s.headers()
	r := record{Entry: Entry{
		ID:   ID{Project: names[s.project], JobNumber: s.job, NodeIndex: s.node, Path: s.path()},
		Key:  s.key(),
		Size: s.size, ETag: etag, LastModified: lm,
		Run: names[s.run],
	}}
	if s.flags&slotRemoved != 0 {
		r.Removed = s.time()
	} else {
		r.Completed = s.time()
	}
	return r, sum
}

func appendHex(b []byte, s string) []byte {
	const digits = "0123456789abcdef"
	for i := 0; i < len(s); i++ {
		b = append(b, digits[s[i]>>4], digits[s[i]&15])
	}
	return b
}
