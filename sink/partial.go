package sink

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"time"
)

// Span is a written range [From, To) of an object.
type Span struct{ From, To int64 }

// prefixOf is how many bytes from the start spans cover without a gap.
func prefixOf(spans []Span) int64 {
	if len(spans) == 0 || spans[0].From > 0 {
		return 0
	}
	return spans[0].To
}

// validSpans reports whether spans are sorted, disjoint, not touching, non
// empty and within [0, size).
func validSpans(spans []Span, size int64) bool {
	var end int64 = -1
	for _, s := range spans {
		if s.From < 0 || s.To <= s.From || s.From <= end || s.To > size {
			return false
		}
		end = s.To
	}
	return true
}

// checkpointStep is how many bytes of an object arrive between two
// checkpoints: the file is made durable and the spans it holds recorded, so
// that a run killed (or a machine that loses power) in the middle of a large
// download loses at most this much of it per file. A slow download is
// checkpointed every checkpointEvery as well, once checkpointMin bytes
// wait, so that a kill loses about a second of it rather than 16 MiB.
const (
	checkpointStep  = 16 << 20
	checkpointMin   = 1 << 20
	checkpointEvery = time.Second
)

// due reports whether unsaved bytes written since the last checkpoint are
// worth a checkpoint now.
func (k *keptFile) due(unsaved int64) bool {
	return unsaved >= checkpointStep ||
		(unsaved >= checkpointMin && time.Since(time.Unix(0, k.since.Load())) >= checkpointEvery)
}

// partialMaxAge is how long kept bytes of an object are worth keeping:
// CircleCI deletes artifacts after 30 days, so nothing older can be resumed.
const partialMaxAge = 31 * 24 * time.Hour

// partialMeta describes key's partial file: which bytes it holds (durably)
// and of which source version.
type partialMeta struct {
	Key       string `json:"key"`
	Validator string `json:"validator"`
	Total     int64  `json:"total"`
	Spans     []Span `json:"spans"`
}

// keptFile is the file of an object being written. It starts in tmp/ (a
// small file is written and placed without ever leaving it) and moves to
// its key's partial slot at its first checkpoint, from where a later run
// can resume it.
//
// Crash safety: the description (partial/<h>.json) names only spans that
// were written before an fsync of the file that completed before the
// description was renamed into place. Whatever else survives a kill or a
// power cut (a file with no description, a description whose file is gone,
// bytes past the described spans) is never read as part of an object:
// Partial ignores it and the next lock holder deletes it.
type keptFile struct {
	l      *Local
	key    string
	opts   PutOptions
	f      *os.File
	path   string       // where f is now: a slash path below the destination
	inSlot bool         // path is key's partial slot
	since  atomic.Int64 // unix nanoseconds when the file was opened or last checkpointed

	mu stdsync.Mutex // serializes checkpoints

	bgMu   stdsync.Mutex
	bgDone chan struct{} // closed when the latest background checkpoint ends
	bgErr  error         // the first error of a background checkpoint
}

func (l *Local) newKept(key string, f *os.File, rel string, opts PutOptions) *keptFile {
	k := &keptFile{l: l, key: key, opts: opts, f: f, path: rel}
	k.since.Store(time.Now().UnixNano())
	return k
}

// checkpoint makes spans durable and describes them in the partial slot.
// A failed fsync is a *FlushError: a second one, to keep the bytes for a
// resume, would return 0 and prove nothing.
func (k *keptFile) checkpoint(spans []Span) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.f.Sync(); err != nil {
		return &FlushError{Dest: k.l.dir, Keys: []string{k.key}, Err: err}
	}
	if !k.inSlot {
		slot := k.l.partialPath(k.key)
		if err := k.l.ensureDir(partialDir); err != nil {
			return err
		}
		// An older description must never describe this file.
		if err := k.l.root.Remove(native(slot + ".json")); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := k.l.root.Rename(native(k.path), native(slot)); err != nil {
			return err
		}
		k.path, k.inSlot = slot, true
		k.l.partials.Store(partialsSome)
	}
	meta, err := json.Marshal(partialMeta{Key: k.key, Validator: k.opts.Validator, Total: k.opts.Size, Spans: spans})
	if err != nil {
		return err
	}
	k.since.Store(time.Now().UnixNano())
	return writeFileAtomic(k.l, k.path+".json", meta)
}

// checkpointLater starts a checkpoint of spans in the background and
// reports whether it did: the writer goes on while the file's fsync runs,
// which is most of a checkpoint's time. It starts none while the previous
// one is still running, and returns the error of one that failed, which
// ends the write as a failed checkpoint would. The spans are those written
// before the fsync starts, so the description still names only bytes the
// fsync covered.
func (k *keptFile) checkpointLater(spans []Span) (bool, error) {
	k.bgMu.Lock()
	defer k.bgMu.Unlock()
	if k.bgErr != nil {
		return false, k.bgErr
	}
	if k.bgDone != nil {
		select {
		case <-k.bgDone:
		default:
			return false, nil
		}
	}
	done := make(chan struct{})
	k.bgDone = done
	go func() {
		defer close(done)
		if err := k.checkpoint(spans); err != nil {
			k.bgMu.Lock()
			k.bgErr = err
			k.bgMu.Unlock()
		}
	}()
	return true, nil
}

// settle waits for the background checkpoint, if one runs, and returns the
// error of any that failed. Everything that moves, describes or removes the
// file settles first.
func (k *keptFile) settle() error {
	k.bgMu.Lock()
	done := k.bgDone
	k.bgMu.Unlock()
	if done != nil {
		<-done
	}
	k.bgMu.Lock()
	defer k.bgMu.Unlock()
	return k.bgErr
}

// keep records spans for a later resume and closes the file; with nothing
// written, or if that fails, or if a background checkpoint's fsync failed,
// it discards the file.
func (k *keptFile) keep(spans []Span) {
	if err := k.settle(); errors.As(err, new(*FlushError)) {
		k.discard()
		return
	}
	if len(spans) == 0 || k.checkpoint(spans) != nil {
		k.discard()
		return
	}
	k.f.Close()
}

// discard drops the file and its description.
func (k *keptFile) discard() {
	k.settle()
	k.f.Close()
	k.l.root.Remove(native(k.path))
	if k.inSlot {
		k.l.root.Remove(native(k.path + ".json"))
	}
}

// placed is called once f was moved to its final key: the description of
// the partial it was, or an older partial of the key, is dropped.
func (k *keptFile) placed() {
	if k.inSlot {
		k.l.root.Remove(native(k.l.partialPath(k.key) + ".json"))
	} else {
		k.l.removePartial(k.key)
	}
}

// partialPath is key's partial slot, a slash path below the destination.
func (l *Local) partialPath(key string) string {
	sum := sha256.Sum256([]byte(key))
	return partialDir + "/" + hex.EncodeToString(sum[:])
}

// readPartial reads and checks key's partial description; ok is false if
// there is no usable partial.
func (l *Local) readPartial(key string) (meta partialMeta, ok bool, err error) {
	if !l.mayHavePartials() {
		return meta, false, nil
	}
	slot := l.partialPath(key)
	if fi, err := l.root.Lstat(native(slot + ".json")); err != nil || !fi.Mode().IsRegular() {
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return meta, false, localErr(err)
		}
		return meta, false, nil
	}
	b, err := l.root.ReadFile(native(slot + ".json"))
	if errors.Is(err, fs.ErrNotExist) {
		return meta, false, nil
	}
	if err != nil {
		return meta, false, localErr(err)
	}
	fi, err := l.root.Lstat(native(slot))
	if errors.Is(err, fs.ErrNotExist) {
		return meta, false, nil
	}
	if err != nil {
		return meta, false, localErr(err)
	}
	if json.Unmarshal(b, &meta) != nil || meta.Key != key || !fi.Mode().IsRegular() || !validSpans(meta.Spans, fi.Size()) ||
		(meta.Total >= 0 && len(meta.Spans) > 0 && meta.Spans[len(meta.Spans)-1].To > meta.Total) {
		return partialMeta{}, false, nil
	}
	return meta, true, nil
}

// Partial implements Resumer.
func (l *Local) Partial(ctx context.Context, key string) (PartialInfo, error) {
	if err := l.checkKey(key); err != nil {
		return PartialInfo{}, err
	}
	meta, ok, err := l.readPartial(key)
	if !ok {
		return PartialInfo{}, err
	}
	return PartialInfo{Size: prefixOf(meta.Spans), Total: meta.Total, Validator: meta.Validator, Spans: meta.Spans}, nil
}

// claimPartial opens key's partial for writing more of it. The description
// is first narrowed to the spans below keep, so it never names bytes that
// are about to be overwritten or cut.
func (l *Local) claimPartial(key string, keep int64, opts PutOptions) (*keptFile, []Span, error) {
	meta, ok, err := l.readPartial(key)
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		return nil, nil, errors.New("no partial write to resume")
	}
	var spans []Span
	for _, s := range meta.Spans {
		if s.From < keep {
			spans = append(spans, Span{s.From, min(s.To, keep)})
		}
	}
	slot := l.partialPath(key)
	f, err := l.root.OpenFile(native(slot), os.O_RDWR, 0)
	if err != nil {
		return nil, nil, localErr(err)
	}
	k := &keptFile{l: l, key: key, opts: opts, f: f, path: slot, inSlot: true}
	k.since.Store(time.Now().UnixNano())
	if !slices.Equal(spans, meta.Spans) || meta.Validator != opts.Validator || meta.Total != opts.Size {
		if err := k.checkpoint(spans); err != nil {
			f.Close()
			return nil, nil, localErr(err)
		}
	}
	return k, spans, nil
}

// DiscardPartial implements Resumer.
func (l *Local) DiscardPartial(ctx context.Context, key string) error {
	if err := l.checkKey(key); err != nil {
		return err
	}
	if !l.mayHavePartials() {
		return nil
	}
	p := l.partialPath(key)
	// The description first: a file without one is never resumed.
	for _, name := range []string{p + ".json", p} {
		if err := l.root.Remove(native(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return localErr(err)
		}
	}
	return nil
}

// removePartial drops key's partial, best effort, after a successful write.
func (l *Local) removePartial(key string) {
	if l.mayHavePartials() {
		p := l.partialPath(key)
		l.root.Remove(native(p + ".json"))
		l.root.Remove(native(p))
	}
}

// cleanPartials deletes what a killed run left in partial/ that no later run
// can use: files without a description, descriptions without a file, and
// partials older than partialMaxAge. Only the holder of the destination's
// lock calls it.
func (l *Local) cleanPartials() {
	entries := l.readState(partialDir)
	names := make(map[string]bool, len(entries))
	for _, e := range entries {
		names[e.Name()] = true
	}
	for _, e := range entries {
		name := e.Name()
		base, isMeta := strings.CutSuffix(name, ".json")
		orphan := (isMeta && !names[base]) || (!isMeta && !names[name+".json"])
		old := false
		if fi, err := e.Info(); err == nil {
			old = time.Since(fi.ModTime()) > partialMaxAge
		}
		if orphan || old || !e.Type().IsRegular() {
			l.root.Remove(native(partialDir + "/" + name))
		}
	}
}

// Reopen implements RangeResumer.
func (l *Local) Reopen(ctx context.Context, key string, size int64, opts PutOptions) (Pending, error) {
	if err := l.checkKey(key); err != nil {
		return nil, err
	}
	if size < 0 || opts.Size != size {
		return nil, fmt.Errorf("reopen %s: size must be known", l.path(key))
	}
	k, spans, err := l.claimPartial(key, size, opts)
	if err != nil {
		return nil, fmt.Errorf("reopen %s: %w", l.path(key), err)
	}
	if err := k.f.Truncate(size); err != nil {
		k.keep(spans)
		return nil, localErr(fmt.Errorf("reopen %s: %w", l.path(key), err))
	}
	return l.newPending(k, size, spans), nil
}
