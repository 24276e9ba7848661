package sink

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc64"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"golang.org/x/sync/errgroup"
)

// Limits of S3 itself.
const (
	maxS3ObjectSize = 5 << 40 // 5 TiB
	maxS3Parts      = 10000
)

// uploadsDir holds one state object per unfinished multipart upload.
const uploadsDir = stateDir + "/uploads/"

// DefaultS3AbandonAfter is how long an unfinished multipart upload is kept
// for a later run to resume before a run that holds the lock aborts it.
const DefaultS3AbandonAfter = 7 * 24 * time.Hour

// crc64NVME is the table of S3's CRC64NVME checksum (the reversed NVMe
// polynomial, as hash/crc64 wants it).
var crc64NVME = crc64.MakeTable(0x9a6c9329ac4bc9b5)

// uploadState is what <prefix>/.artifact-sync/uploads/<hash of key>.json
// records about one multipart upload, so a later run can continue it: the
// parts that S3 acknowledged, each with the SHA-256 and CRC64NVME state of
// the object from its start through that part.
type uploadState struct {
	Key       string    `json:"key"`
	UploadID  string    `json:"upload_id,omitempty"` // "" while the upload is being created
	Started   time.Time `json:"started"`
	Updated   time.Time `json:"updated"`
	PartSize  int64     `json:"part_size"`
	Total     int64     `json:"total"` // PutOptions.Size: the whole object, or -1
	Validator string    `json:"validator,omitempty"`
	// CRC64 says the upload was created with S3's full-object CRC64NVME
	// checksum: parts carry theirs and Complete the whole object's.
	CRC64 bool           `json:"crc64nvme,omitempty"`
	Parts []uploadedPart `json:"parts,omitempty"` // numbered 1, 2, … without gaps
}

type uploadedPart struct {
	Number int32  `json:"n"`
	Size   int64  `json:"size"`
	ETag   string `json:"etag"`
	// PartCRC is the part's own CRC64NVME (base64, as S3 sends it); CRC
	// is the object's from byte 0 through the end of this part.
	PartCRC string `json:"part_crc,omitempty"`
	CRC     uint64 `json:"crc"`
	// SHA256 is crypto/sha256's state (encoding.BinaryMarshaler) after the
	// object's bytes through this part.
	SHA256 []byte `json:"sha256"`
}

// size is the number of bytes the parts cover, from the start.
func (st *uploadState) size() int64 {
	var n int64
	for _, p := range st.Parts {
		n += p.Size
	}
	return n
}

func stateKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return uploadsDir + hex.EncodeToString(sum[:20]) + ".json"
}

func b64CRC(c uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], c)
	return base64.StdEncoding.EncodeToString(b[:])
}

// loadState reads key's upload state; nil if there is none.
func (s *S3) loadState(ctx context.Context, key string) (*uploadState, error) {
	if !s.mayHaveState(ctx, key) {
		return nil, nil
	}
	return s.loadStateAt(ctx, stateKey(key))
}

// saveState records st; the upload it names can then be resumed or, once
// abandoned, aborted by a later run.
func (s *S3) saveState(ctx context.Context, st *uploadState) error {
	st.Updated = time.Now().UTC()
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	_, err = s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(s.bucket), Key: aws.String(s.full(stateKey(st.Key))),
		Body: bytes.NewReader(b), ContentLength: aws.Int64(int64(len(b))), ContentType: aws.String("application/json"),
	})
	if err != nil {
		return s.classify("record upload state of", st.Key, err)
	}
	s.stateMu.Lock()
	if s.stateKeys != nil {
		s.stateKeys[stateKey(st.Key)] = true
	}
	s.stateMu.Unlock()
	return nil
}

func (s *S3) dropState(ctx context.Context, key string) error {
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.full(stateKey(key)))})
	if err != nil && status(err) != http.StatusNotFound {
		return s.classify("drop upload state of", key, err)
	}
	s.stateMu.Lock()
	delete(s.stateKeys, stateKey(key))
	s.stateMu.Unlock()
	return nil
}

// mayHaveState answers from one listing of the uploads folder, taken the
// first time it is asked, so that a key without state costs no request.
// A failed listing answers yes for every key.
func (s *S3) mayHaveState(ctx context.Context, key string) bool {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	if s.stateKeys == nil {
		keys := map[string]bool{}
		for info, err := range s.List(ctx, uploadsDir) {
			if err != nil {
				return true
			}
			keys[info.Key] = true
		}
		s.stateKeys = keys
	}
	return s.stateKeys[stateKey(key)]
}

func (s *S3) abort(ctx context.Context, key, uploadID string) error {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	_, err := s.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{
		Bucket: aws.String(s.bucket), Key: aws.String(s.full(key)), UploadId: aws.String(uploadID)})
	if err != nil && !noSuchUpload(err) && !notOffered(err) {
		return s.classify("abort upload of", key, err)
	}
	// notOffered: a server that cannot abort (s3rver answers 405) keeps
	// the parts whatever this does; the record is dropped all the same, so
	// the upload starts over instead of failing the artifact for good.
	return nil
}

// notOffered reports whether err says the server does not offer the
// operation at all (405 Method Not Allowed, 501 Not Implemented), as
// s3rver 3.7.1 answers ListParts, AbortMultipartUpload and
// ListMultipartUploads: asking again can never work.
func notOffered(err error) bool {
	var ae smithy.APIError
	code := status(err)
	return code == http.StatusMethodNotAllowed || code == http.StatusNotImplemented ||
		(errors.As(err, &ae) && (ae.ErrorCode() == "NotImplemented" || ae.ErrorCode() == "MethodNotAllowed"))
}

func noSuchUpload(err error) bool {
	var ae smithy.APIError
	return status(err) == http.StatusNotFound || (errors.As(err, &ae) && ae.ErrorCode() == "NoSuchUpload")
}

// discard aborts key's recorded upload, and any other upload of key begun
// since the state was (one whose creation's reply never came), then drops
// the state.
func (s *S3) discard(ctx context.Context, key string, st *uploadState) error {
	if st == nil {
		return nil
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	var errs []error
	if st.UploadID != "" {
		errs = append(errs, s.abort(dctx, key, st.UploadID))
	}
	p := s3.NewListMultipartUploadsPaginator(s.client, &s3.ListMultipartUploadsInput{
		Bucket: aws.String(s.bucket), Prefix: aws.String(s.full(key))})
	for p.HasMorePages() {
		page, err := p.NextPage(dctx)
		if err != nil {
			if !notOffered(err) {
				errs = append(errs, s.classify("list the open uploads of", key, err))
			}
			break
		}
		for _, up := range page.Uploads {
			if aws.ToString(up.Key) == s.full(key) && aws.ToString(up.UploadId) != st.UploadID && ownedBy(st, up) {
				errs = append(errs, s.abort(dctx, key, aws.ToString(up.UploadId)))
			}
		}
	}
	errs = append(errs, s.dropState(dctx, key))
	return errors.Join(errs...)
}

// ownedBy reports whether the open upload up was begun for the write that
// st records: st was saved just before the upload was created, so an
// upload of its key begun after that (less a minute of clock skew) is its.
func ownedBy(st *uploadState, up types.MultipartUpload) bool {
	return !aws.ToTime(up.Initiated).Before(st.Started.Add(-time.Minute))
}

// resumable loads key's state and checks it against the parts S3 lists
// for the upload: the kept parts are those listed back with the recorded
// size and ETag, from part 1 without a gap. It returns nil (having dropped
// the state and aborted the upload) when nothing is worth keeping.
func (s *S3) resumable(ctx context.Context, key string) (*uploadState, error) {
	st, err := s.loadState(ctx, key)
	if err != nil || st == nil {
		return nil, err
	}
	if st.UploadID == "" || len(st.Parts) == 0 {
		return nil, s.discard(ctx, key, st)
	}
	listed := map[int32]types.Part{}
	p := s3.NewListPartsPaginator(s.client, &s3.ListPartsInput{
		Bucket: aws.String(s.bucket), Key: aws.String(s.full(key)), UploadId: aws.String(st.UploadID)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			if noSuchUpload(err) || notOffered(err) {
				// Completed or aborted meanwhile; or a server that cannot
				// list parts, so the upload cannot be checked, and never
				// will be: it starts over.
				return nil, s.discard(ctx, key, st)
			}
			return nil, s.classify("list the parts of", key, err)
		}
		for _, part := range page.Parts {
			listed[aws.ToInt32(part.PartNumber)] = part
		}
	}
	kept := 0
	for i, part := range st.Parts {
		l, ok := listed[part.Number]
		if !ok || part.Number != int32(i+1) || aws.ToInt64(l.Size) != part.Size || unquote(aws.ToString(l.ETag)) != unquote(part.ETag) ||
			(part.PartCRC != "" && l.ChecksumCRC64NVME != nil && aws.ToString(l.ChecksumCRC64NVME) != part.PartCRC) {
			break
		}
		kept++
	}
	st.Parts = st.Parts[:kept]
	if kept == 0 {
		return nil, s.discard(ctx, key, st)
	}
	return st, nil
}

// noRetry turns the SDK's retries off for one call.
func noRetry(o *s3.Options) { o.Retryer = aws.NopRetryer{} }

func unquote(etag string) string { return strings.Trim(etag, `"`) }

// Partial implements Resumer: the bytes of key's unfinished multipart
// upload that are in parts S3 acknowledged and lists back, from the start.
func (s *S3) Partial(ctx context.Context, key string) (PartialInfo, error) {
	if err := ValidKey(key); err != nil {
		return PartialInfo{}, err
	}
	st, err := s.resumable(ctx, key)
	if err != nil || st == nil {
		return PartialInfo{}, err
	}
	return PartialInfo{Size: st.size(), Total: st.Total, Validator: st.Validator}, nil
}

// DiscardPartial implements Resumer: it aborts key's unfinished upload.
func (s *S3) DiscardPartial(ctx context.Context, key string) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	st, err := s.loadState(ctx, key)
	if err != nil {
		return err
	}
	return s.discard(ctx, key, st)
}

// PutFrom implements Resumer. S3 cannot cut a part short, so off must be
// where a kept part ends (what Partial reports is one), or 0.
func (s *S3) PutFrom(ctx context.Context, key string, off int64, r io.Reader, opts PutOptions) (Info, error) {
	if err := ValidKey(key); err != nil {
		return Info{}, err
	}
	if off == 0 {
		return s.Put(ctx, key, r, opts)
	}
	st, err := s.resumable(ctx, key)
	if err != nil {
		return Info{}, err
	}
	if st == nil {
		return Info{}, fmt.Errorf("resume %s at byte %d: no unfinished upload is kept", s.url(key), off)
	}
	var kept int64
	n := 0
	for n < len(st.Parts) && kept < off {
		kept += st.Parts[n].Size
		n++
	}
	if kept != off {
		return Info{}, fmt.Errorf("resume %s at byte %d: the kept parts end at byte %d, not there", s.url(key), off, kept)
	}
	if opts.Size >= 0 && opts.Size < off {
		return Info{}, fmt.Errorf("resume %s at byte %d: the object is only %d bytes", s.url(key), off, opts.Size)
	}
	st.Parts = st.Parts[:n]
	last := st.Parts[n-1]
	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(last.SHA256); err != nil {
		return Info{}, errors.Join(fmt.Errorf("resume %s: unreadable hash state: %w", s.url(key), err), s.discard(ctx, key, st))
	}
	st.Total, st.Validator = opts.Size, opts.Validator
	cr := newCheckedReader(ctx, r, opts.Size, off, h)
	u := &upload{s: s, key: key, st: st, crc: last.CRC, opts: opts}
	held, err := s.reserve(ctx, u.memory())
	if err != nil {
		return Info{}, err
	}
	defer s.mem.Release(held)
	info, _, err := u.run(ctx, cr, nil)
	return info, err
}

// upload is one multipart upload in progress.
type upload struct {
	s    *S3
	key  string
	opts PutOptions
	cond precondition // on CompleteMultipartUpload
	crc  uint64       // CRC64NVME of the object through the last part read

	mu      sync.Mutex
	st      *uploadState           // Parts: acknowledged, without a gap
	done    map[int32]uploadedPart // acknowledged beyond st.Parts
	saveErr error
}

// memory is how many bytes of part buffers the upload holds at most.
func (u *upload) memory() int64 {
	return int64(u.concurrency()+1) * u.st.PartSize
}

// concurrency is how many parts go up at once: S3Config.Concurrency, fewer
// when the parts are so large that the buffers would not fit the memory
// limit.
func (u *upload) concurrency() int {
	c := u.s.concurrency
	for c > 1 && int64(c+1)*u.st.PartSize > u.s.memLimit {
		c--
	}
	return c
}

// partSizeFor is the part size for an object of size bytes (-1: unknown):
// PartSize, or larger when S3's 10,000 parts would not hold the object.
func (s *S3) partSizeFor(size int64) int64 {
	return max(s.partSize, (size+maxS3Parts-1)/maxS3Parts)
}

// start begins a new multipart upload of key. It first records that it is
// about to (so a later run recognises the upload as its own even if this
// process dies before it knows the upload's ID), then creates it with the
// object's metadata and S3's full-object CRC64NVME checksum.
func (s *S3) start(ctx context.Context, key string, opts PutOptions) (*uploadState, error) {
	st := &uploadState{Key: key, Started: time.Now().UTC(), PartSize: s.partSizeFor(opts.Size),
		Total: opts.Size, Validator: opts.Validator, CRC64: !s.noCRC64.Load()}
	if err := s.saveState(ctx, st); err != nil {
		return nil, err
	}
	in := &s3.CreateMultipartUploadInput{
		Bucket:      aws.String(s.bucket),
		Key:         aws.String(s.full(key)),
		ContentType: aws.String(contentType(key)),
		Metadata:    userMetadata(opts.Metadata, ""),
	}
	if st.CRC64 {
		in.ChecksumAlgorithm = types.ChecksumAlgorithmCrc64nvme
		in.ChecksumType = types.ChecksumTypeFullObject
	}
	// Not retried by the SDK: a retry after a lost reply would begin a
	// second upload. The state saved above lets a later Put, Partial or
	// TidyUploads find an upload whose reply was lost.
	out, err := s.client.CreateMultipartUpload(ctx, in, noRetry)
	if err != nil && st.CRC64 && unsupported(err) {
		// A server without CRC64NVME: the parts still carry the SDK's
		// checksums, and the HEAD after the upload checks the size.
		s.noCRC64.Store(true)
		st.CRC64 = false
		in.ChecksumAlgorithm, in.ChecksumType = "", ""
		out, err = s.client.CreateMultipartUpload(ctx, in, noRetry)
	}
	if err != nil {
		err = s.classify("put", key, err)
		if code := status(err); code >= 400 && code < 500 {
			// Refused: no upload was begun.
			err = errors.Join(err, s.dropState(context.WithoutCancel(ctx), key))
		}
		return nil, err
	}
	st.UploadID = aws.ToString(out.UploadId)
	if err := s.saveState(ctx, st); err != nil {
		return nil, errors.Join(err, s.abort(ctx, key, st.UploadID))
	}
	return st, nil
}

// unsupported reports whether err says the server does not know a
// request's feature (as opposed to refusing this object).
func unsupported(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "NotImplemented", "InvalidArgument", "InvalidRequest", "InvalidChecksum":
			return true
		}
	}
	return status(err) == http.StatusNotImplemented
}

// run reads the rest of the object from cr (first, if not nil, is what was
// read of it already) into parts, uploads them Concurrency at a time,
// completes the upload and checks the object with a HEAD. The state is
// saved as the acknowledged parts grow, so if run fails, what S3 holds is
// kept for PutFrom; a run that fails before any part was acknowledged
// leaves nothing.
func (u *upload) run(ctx context.Context, cr *checkedReader, first []byte) (Info, string, error) {
	conc := u.concurrency()
	u.done = map[int32]uploadedPart{}
	free := make(chan []byte, conc+1)
	for range conc + 1 {
		free <- nil // grown as bytes arrive
	}
	if first != nil {
		<-free
	}
	g, gctx := errgroup.WithContext(ctx)
	num := int32(len(u.st.Parts)) + 1
	var readErr error
	for {
		var data []byte
		var err error
		if first != nil {
			data, first = first, nil
		} else {
			var buf []byte
			select {
			case buf = <-free:
			case <-gctx.Done():
			}
			if gctx.Err() != nil {
				break
			}
			data, err = readPart(cr, buf, u.st.PartSize)
			if err != nil && err != io.EOF {
				readErr = err
				break
			}
			if len(data) == 0 && num > 1 {
				break // the object ended with the last part
			}
		}
		if num > maxS3Parts {
			readErr = fmt.Errorf("the object is larger than S3's %d parts of %d bytes", maxS3Parts, u.st.PartSize)
			break
		}
		u.crc = crc64.Update(u.crc, crc64NVME, data)
		hs, _ := cr.h.(encoding.BinaryMarshaler).MarshalBinary()
		part := uploadedPart{Number: num, Size: int64(len(data)), CRC: u.crc, SHA256: hs}
		if u.st.CRC64 {
			part.PartCRC = b64CRC(crc64.Checksum(data, crc64NVME))
		}
		g.Go(func() error {
			defer func() { free <- data }()
			return u.uploadPart(gctx, part, data)
		})
		num++
		if err == io.EOF {
			break
		}
	}
	err := g.Wait()
	if readErr != nil {
		err = readErr
	} else if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return Info{}, "", u.fail(ctx, err, cr)
	}
	return u.complete(ctx, cr)
}

// readPart reads up to size bytes of r into buf, which it grows as bytes
// arrive (so a stream that claims a huge size but ends early costs at most
// twice what it delivered) and returns. A nil error means it read size bytes.
func readPart(r io.Reader, buf []byte, size int64) ([]byte, error) {
	buf = buf[:0]
	for int64(len(buf)) < size {
		if len(buf) == cap(buf) {
			// Straight to the part size for ordinary parts; doubling from
			// 8 MiB for the huge parts of a huge declared size.
			want := min(size, max(2*int64(cap(buf)), DefaultS3PartSize))
			buf = slices.Grow(buf, int(want)-len(buf))
		}
		n, err := r.Read(buf[len(buf):int(min(int64(cap(buf)), size))])
		buf = buf[:len(buf)+n]
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

func (u *upload) uploadPart(ctx context.Context, part uploadedPart, data []byte) error {
	in := &s3.UploadPartInput{
		Bucket:        aws.String(u.s.bucket),
		Key:           aws.String(u.s.full(u.key)),
		UploadId:      aws.String(u.st.UploadID),
		PartNumber:    aws.Int32(part.Number),
		Body:          bytes.NewReader(data), // in memory: the SDK may retry
		ContentLength: aws.Int64(part.Size),
	}
	if part.PartCRC != "" {
		in.ChecksumAlgorithm = types.ChecksumAlgorithmCrc64nvme
		in.ChecksumCRC64NVME = aws.String(part.PartCRC)
	}
	out, err := u.s.client.UploadPart(ctx, in)
	if err != nil {
		return u.s.classify("put", u.key, err)
	}
	part.ETag = aws.ToString(out.ETag)
	u.mu.Lock()
	defer u.mu.Unlock()
	u.done[part.Number] = part
	advanced := false
	for {
		next, ok := u.done[int32(len(u.st.Parts))+1]
		if !ok {
			break
		}
		delete(u.done, next.Number)
		u.st.Parts = append(u.st.Parts, next)
		advanced = true
	}
	if advanced {
		// Saved under u.mu, so states are written in order. A failed save
		// costs only resumability; the upload goes on.
		if err := u.s.saveState(context.WithoutCancel(ctx), u.st); err != nil && u.saveErr == nil {
			u.saveErr = err
		}
	}
	return nil
}

// fail ends an upload that failed with err: it keeps the acknowledged
// parts for PutFrom, unless there are none or the stream itself was wrong
// (longer than declared), and returns one line saying what went wrong.
func (u *upload) fail(ctx context.Context, err error, cr *checkedReader) error {
	u.mu.Lock()
	kept := len(u.st.Parts)
	saveErr := u.saveErr
	u.mu.Unlock()
	if kept == 0 || errors.Is(err, ErrLongStream) {
		if derr := u.s.discard(ctx, u.key, u.st); derr != nil {
			err = errors.Join(err, derr)
		}
	} else if saveErr != nil {
		err = errors.Join(err, saveErr)
	}
	if cr.err != nil {
		return &s3Error{msg: fmt.Sprintf("put %s: %v", u.s.url(u.key), cr.err), errs: []error{cr.err, err}}
	}
	if errors.Is(err, ErrShortStream) || errors.Is(err, ErrLongStream) || errors.Is(err, context.Canceled) {
		return &s3Error{msg: fmt.Sprintf("put %s: %v", u.s.url(u.key), err), errs: []error{err}}
	}
	var se *s3Error
	var pe *PermanentError
	if errors.As(err, &se) || errors.As(err, &pe) {
		return err
	}
	return &s3Error{msg: fmt.Sprintf("put %s: %s", u.s.url(u.key), oneLine(err.Error())), errs: []error{err}}
}

// complete finishes the upload and checks the object with one HEAD: its
// size and, where the server reports it, its full-object CRC64NVME must
// be what was streamed, or the object is deleted and Put fails.
func (u *upload) complete(ctx context.Context, cr *checkedReader) (Info, string, error) {
	s, st := u.s, u.st
	parts := make([]types.CompletedPart, len(st.Parts))
	for i, p := range st.Parts {
		parts[i] = types.CompletedPart{PartNumber: aws.Int32(p.Number), ETag: aws.String(p.ETag)}
		if p.PartCRC != "" {
			parts[i].ChecksumCRC64NVME = aws.String(p.PartCRC)
		}
	}
	in := &s3.CompleteMultipartUploadInput{
		Bucket:          aws.String(s.bucket),
		Key:             aws.String(s.full(u.key)),
		UploadId:        aws.String(st.UploadID),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	}
	crc := b64CRC(u.crc)
	if st.CRC64 {
		in.ChecksumType = types.ChecksumTypeFullObject
		in.ChecksumCRC64NVME = aws.String(crc)
	}
	if u.cond.set() && s.completeConditions(ctx) {
		in.IfMatch, in.IfNoneMatch = u.cond.headers()
	}
	out, err := s.client.CompleteMultipartUpload(ctx, in)
	if err != nil {
		if code := status(err); code >= 400 && code < 500 && !noSuchUpload(err) {
			// The server refused these parts (a wrong checksum, a part
			// it lost): they are no use to a later run either.
			err = errors.Join(err, s.discard(ctx, u.key, st))
		}
		return Info{}, "", s.classify("put", u.key, err)
	}
	// A state left behind names an upload that no longer exists, which
	// Partial and TidyUploads recognise and drop: not worth failing for.
	_ = s.dropState(context.WithoutCancel(ctx), u.key)
	info := Info{Key: u.key, Size: cr.n, SHA256: cr.sum(), ModTime: time.Now()}
	// The check comes after the tag, the last write that could change the
	// object: gofakes3 1.2.0 takes PUT ?tagging for a PUT of the object and
	// answers 200 having replaced it with the tagging XML.
	tagged := s.tagSHA256(ctx, u.key, info.SHA256)
	if err := s.checkObject(ctx, u.key, info.Size, st.CRC64, crc, ""); err != nil {
		if tagged {
			// The tag may be what changed it: the retry goes without.
			s.noTagging.Store(true)
		}
		return Info{}, "", err
	}
	return info, aws.ToString(out.ETag), nil
}

// checkObject HEADs key after an upload and anything else written to it:
// a size other than size, or a checksum the server reports that differs
// from what was streamed (crc64 for a multipart object, sha256 base64 for
// a single PUT), means the object is not what was sent: it is deleted, and
// the error says so. (Not the ETag: gofakes3 answers a completed upload
// with one ETag and HEAD with another, for the same bytes.)
func (s *S3) checkObject(ctx context.Context, key string, size int64, hasCRC bool, crc, sha string) error {
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: aws.String(s.bucket), Key: aws.String(s.full(key)), ChecksumMode: types.ChecksumModeEnabled})
	if err != nil {
		return s.classify("check the upload of", key, err)
	}
	var bad string
	switch got := aws.ToInt64(out.ContentLength); {
	case got != size:
		bad = fmt.Sprintf("the server holds %d bytes, %d were sent", got, size)
	case hasCRC && out.ChecksumCRC64NVME != nil && out.ChecksumType != types.ChecksumTypeComposite && aws.ToString(out.ChecksumCRC64NVME) != crc:
		bad = fmt.Sprintf("the server's CRC64NVME is %s, the bytes sent have %s", aws.ToString(out.ChecksumCRC64NVME), crc)
	case sha != "" && out.ChecksumSHA256 != nil && out.ChecksumType != types.ChecksumTypeComposite && aws.ToString(out.ChecksumSHA256) != sha:
		bad = fmt.Sprintf("the server's SHA-256 is %s, the bytes sent have %s", aws.ToString(out.ChecksumSHA256), sha)
	}
	if bad == "" {
		return nil
	}
	_, derr := s.client.DeleteObject(context.WithoutCancel(ctx), &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.full(key))})
	fate := "it was deleted"
	if derr != nil {
		fate = "deleting it failed too (" + oneLine(s.classify("delete", key, derr).Error()) + ")"
	}
	return &s3Error{msg: fmt.Sprintf("put %s: the object does not match what was uploaded (%s); %s, and the transfer will be retried", s.url(key), bad, fate),
		errs: []error{ErrMismatch, derr}}
}

// ErrMismatch is matched by the error of a Put whose object, read back with
// a HEAD, is not what was sent.
var ErrMismatch = errors.New("object does not match what was uploaded")

// tagSHA256 puts the object's SHA-256 in an object tag: S3 fixes metadata
// when a multipart upload starts, before the hash is known, and a tag is
// the one place for it that does not rewrite the object. Stat reads it
// back. It is a convenience (the manifest holds the hash): on a server
// without tagging, or where probeTagging found it unsafe, the object goes
// without, and verify re-reads it. It reports whether it sent the tag.
func (s *S3) tagSHA256(ctx context.Context, key, sum string) bool {
	if !s.probeTagging(ctx) {
		return false
	}
	_, err := s.client.PutObjectTagging(ctx, &s3.PutObjectTaggingInput{
		Bucket: aws.String(s.bucket), Key: aws.String(s.full(key)),
		Tagging: &types.Tagging{TagSet: []types.Tag{{Key: aws.String("sha256"), Value: aws.String(sum)}}},
	})
	if err != nil && (unsupported(err) || notOffered(err)) {
		s.noTagging.Store(true)
	}
	return true
}

// probeTagging finds out, once per sink and before the first tag, whether
// object tagging is safe here: it tags a scratch object in the state
// folder and reads it back. A server that answers the tag with an error is
// merely without tagging; one that changes the object's size or ETag
// (gofakes3 1.2.0 stores the tagging XML as the object), or cannot give
// the tag back, must not be sent tags at all.
func (s *S3) probeTagging(ctx context.Context) bool {
	s.tagMu.Lock()
	defer s.tagMu.Unlock()
	if s.noTagging.Load() {
		return false
	}
	if s.tagProbed {
		return true
	}
	key := s.full(stateDir + "/probe-tagging-" + rand.Text())
	safe := func() bool {
		const body = "probe"
		put, err := s.client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key),
			Body: strings.NewReader(body), ContentLength: aws.Int64(int64(len(body)))})
		if err != nil {
			return false
		}
		defer func() {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			_, _ = s.client.DeleteObject(dctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
		}()
		_, err = s.client.PutObjectTagging(ctx, &s3.PutObjectTaggingInput{Bucket: aws.String(s.bucket), Key: aws.String(key),
			Tagging: &types.Tagging{TagSet: []types.Tag{{Key: aws.String("sha256"), Value: aws.String(strings.Repeat("0", 64))}}}})
		if err != nil {
			return false
		}
		head, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
		if err != nil || aws.ToInt64(head.ContentLength) != int64(len(body)) || unquote(aws.ToString(head.ETag)) != unquote(aws.ToString(put.ETag)) {
			return false
		}
		tags, err := s.client.GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
		return err == nil && slices.ContainsFunc(tags.TagSet, func(t types.Tag) bool {
			return aws.ToString(t.Key) == "sha256" && aws.ToString(t.Value) == strings.Repeat("0", 64)
		})
	}()
	if ctx.Err() != nil {
		return false // cut short: no verdict, ask again next time
	}
	if !safe {
		s.noTagging.Store(true)
		return false
	}
	s.tagProbed = true
	return true
}

// sha256Tag reads the tag tagSHA256 wrote; "" if there is none.
func (s *S3) sha256Tag(ctx context.Context, key string) string {
	if s.noTagging.Load() {
		return ""
	}
	out, err := s.client.GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: aws.String(s.bucket), Key: aws.String(s.full(key))})
	if err != nil {
		return ""
	}
	for _, t := range out.TagSet {
		if aws.ToString(t.Key) == "sha256" {
			return validSHA256(aws.ToString(t.Value))
		}
	}
	return ""
}

func validSHA256(v string) string {
	if len(v) != 64 {
		return ""
	}
	if _, err := hex.DecodeString(v); err != nil {
		return ""
	}
	return strings.ToLower(v)
}

// TidyUploads aborts the multipart uploads below the prefix that earlier
// runs left behind: those recorded in the uploads folder and untouched for
// longer than S3Config.AbandonAfter, those recorded as being created by a
// run that died before it knew their ID, and unrecorded ones older than
// AbandonAfter. An unrecorded upload younger than that may be somebody
// else's and is left alone. Lock calls it once it holds the lock, so no
// other run of the tool is writing the prefix.
func (s *S3) TidyUploads(ctx context.Context) error {
	now := time.Now()
	// The two listings do not depend on each other: one round trip, not two.
	var (
		states  map[string]*uploadState // by key
		uploads []types.MultipartUpload
	)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) {
		states, err = s.recordedUploads(gctx)
		return err
	})
	g.Go(func() (err error) {
		uploads, err = s.openUploads(gctx)
		return err
	})
	if err := g.Wait(); err != nil {
		return err
	}
	var errs []error
	seen := map[string]bool{} // keys whose recorded upload is listed
	for _, up := range uploads {
		key := strings.TrimPrefix(aws.ToString(up.Key), s.prefix)
		id, initiated := aws.ToString(up.UploadId), aws.ToTime(up.Initiated)
		st := states[key]
		var abandoned bool
		switch {
		case st != nil && st.UploadID == id:
			seen[key] = true
			abandoned = now.Sub(st.Updated) > s.abandonAfter
		case st != nil && ownedBy(st, up):
			// Created for the recorded write (the recorded ID is
			// another one, or none yet): a run died in between.
			abandoned = true
		default:
			abandoned = now.Sub(initiated) > s.abandonAfter
		}
		if abandoned {
			errs = append(errs, s.abort(ctx, key, id))
			if st != nil && st.UploadID == id {
				errs = append(errs, s.dropState(ctx, key))
			}
		}
	}
	for key, st := range states {
		switch {
		case seen[key]:
		case st.UploadID == "" || now.Sub(st.Updated) > s.abandonAfter:
			errs = append(errs, s.discard(ctx, key, st))
		default:
			// Not listed: finished or aborted meanwhile, or a server
			// that lists uploads incompletely. ListParts tells, and
			// resumable drops the state if the upload is gone.
			_, err := s.resumable(ctx, key)
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// recordedUploads reads the upload states in the uploads folder, by key.
func (s *S3) recordedUploads(ctx context.Context) (map[string]*uploadState, error) {
	states := map[string]*uploadState{}
	for info, err := range s.List(ctx, uploadsDir) {
		if err != nil {
			return nil, err
		}
		if !strings.HasSuffix(info.Key, ".json") {
			continue
		}
		st, err := s.loadStateAt(ctx, info.Key)
		if err != nil {
			return nil, err
		}
		if st != nil {
			states[st.Key] = st
		}
	}
	return states, nil
}

// openUploads lists the multipart uploads open below the prefix: the whole
// bucket's, filtered here, since MinIO lists uploads only for an exact key
// or for no prefix at all.
func (s *S3) openUploads(ctx context.Context) ([]types.MultipartUpload, error) {
	var ups []types.MultipartUpload
	p := s3.NewListMultipartUploadsPaginator(s.client, &s3.ListMultipartUploadsInput{Bucket: aws.String(s.bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if notOffered(err) {
			return nil, nil // recorded uploads are still looked at, one by one
		}
		if err != nil {
			return nil, s.classify("list the open uploads of", "", err)
		}
		for _, up := range page.Uploads {
			if strings.HasPrefix(aws.ToString(up.Key), s.prefix) {
				ups = append(ups, up)
			}
		}
	}
	return ups, nil
}

// loadStateAt reads the upload state object at key (in the uploads
// folder); nil if there is none, or it is not a state this version wrote.
func (s *S3) loadStateAt(ctx context.Context, key string) (*uploadState, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.full(key))})
	if err != nil {
		if status(err) == http.StatusNotFound {
			return nil, nil
		}
		return nil, s.classify("read", key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(io.LimitReader(out.Body, 4<<20))
	if err != nil {
		return nil, s.classify("read", key, err)
	}
	var st uploadState
	if json.Unmarshal(b, &st) != nil || stateKey(st.Key) != key || st.PartSize < minS3PartSize {
		return nil, nil
	}
	return &st, nil
}
