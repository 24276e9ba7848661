package sink

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"golang.org/x/sync/semaphore"
)

// Defaults for S3Config's zero values.
const (
	DefaultS3PartSize    = 8 << 20
	DefaultS3Concurrency = 4
	// DefaultS3MemoryLimit lets four multipart uploads with the default
	// parts, or dozens of small objects, be buffered at once.
	DefaultS3MemoryLimit = 256 << 20
	minS3PartSize        = 5 << 20 // S3's minimum
)

// S3Config configures NewS3. Zero values mean the documented defaults.
type S3Config struct {
	Bucket string
	// Prefix is prepended to every key, with a slash between them.
	Prefix string
	// Endpoint, Region and PathStyle override what the AWS SDK's default
	// chain found (AWS_ENDPOINT_URL_S3, AWS_REGION, profiles). Region falls
	// back to us-east-1.
	Endpoint  string
	Region    string
	PathStyle bool
	// AccessKeyID and SecretAccessKey, if set, replace the SDK's credential
	// chain with these static credentials.
	AccessKeyID     string
	SecretAccessKey string
	// PartSize is the multipart part size (default 8 MiB, at least 5 MiB);
	// objects up to PartSize bytes go up in a single PutObject.
	PartSize int64
	// Concurrency is how many parts of one object are uploaded at once
	// (default 4).
	Concurrency int
	// HTTPClient, if set, makes every request.
	HTTPClient *http.Client
	// MemoryLimit caps the buffers of all concurrent Puts together
	// (default DefaultS3MemoryLimit): a Put waits until its buffers fit.
	// One Put is always let through, however much it needs.
	MemoryLimit int64
	// AbandonAfter is how long an unfinished multipart upload is kept for
	// a later run to resume (default DefaultS3AbandonAfter); see
	// TidyUploads.
	AbandonAfter time.Duration
	// NoLock makes Lock hand out a lease that holds nothing, for servers
	// that do not enforce conditional writes (--s3-lock=none).
	NoLock bool
	// Logger receives the AWS SDK's own log lines, at debug level (see
	// sdkLogger); nil drops them.
	Logger *slog.Logger
}

// S3 is a Sink that writes objects below a prefix of an S3 bucket.
//
// Put streams objects of any size without a temporary file. It buffers up
// to PartSize bytes; a stream that ends within that goes up in one
// PutObject with an x-amz-checksum-sha256 the server verifies (where it
// implements S3 checksums; Ceph RGW 16.2 ignores it). A longer
// stream becomes a multipart upload whose parts go up Concurrency at a
// time, each with its CRC64NVME, and whose completion carries the whole
// object's CRC64NVME (S3's full-object checksum type, computed as the bytes
// stream), so a server that supports it checks the object end to end.
// Nothing appears at the key until CompleteMultipartUpload succeeds. After
// every upload one HEAD checks the object: a size, or a checksum the server
// reports, that differs from what was sent deletes it and fails the Put
// (ErrMismatch).
//
// Multipart uploads outlive a failed Put: the parts S3 acknowledged are
// recorded under <prefix>/.artifact-sync/uploads/ with the SHA-256 and
// CRC64NVME state at each part boundary, so Partial and PutFrom (Resumer)
// continue the upload in a later attempt or run, checking the parts against
// ListParts. A Put that fails before any part was acknowledged leaves
// nothing; DiscardPartial aborts an upload; TidyUploads (run by Lock)
// aborts what earlier runs abandoned.
//
// Memory: one Put holds at most (Concurrency+1) × PartSize bytes of part
// buffers (fewer parts at once when a huge object needs parts so large that
// they would not fit MemoryLimit), grown as bytes arrive. That is 40 MiB
// with the defaults of 8 MiB × 4. Concurrent Puts each need their own,
// within S3Config.MemoryLimit for all of them together; a Put of at most
// 1 MiB, or of bytes already in memory (a *bytes.Reader or
// *strings.Reader) that fit one PutObject, does not wait for the limit.
// S3 allows 10,000 parts and 5 TiB, so an object of unknown size is limited
// to 10,000 × PartSize (78 GiB with the default); for a known larger size
// the parts grow to fit, and a declared size over 5 TiB is refused.
//
// Objects carry the caller's PutOptions.Metadata. A single-PUT object has
// its SHA-256 as user metadata (x-amz-meta-sha256); S3 fixes metadata when a
// multipart upload starts, before the hash is known, so a multipart object
// gets it as an object tag ("sha256"), which does not rewrite the object.
// Stat reports either. Content-Type follows the key's extension.
//
// Every body the sink sends is in memory (a part or a small object), so the
// SDK's own retries stay on: a 503 SlowDown or a reset connection is
// retried there, and the caller retries a transfer as a whole only when its
// source failed.
type S3 struct {
	client       *s3.Client
	bucket       string
	prefix       string // "" or ending in "/"
	endpoint     string // for messages
	partSize     int64
	concurrency  int
	memLimit     int64
	mem          *semaphore.Weighted // bytes of buffers Puts may hold
	abandonAfter time.Duration
	noLock       bool
	maxKeys      int32 // keys per ListObjectsV2 page; 0: the server's (1,000)

	noCRC64   atomic.Bool // the server refused CRC64NVME multipart uploads
	noTagging atomic.Bool // the server does not do object tagging, or not safely
	tagMu     sync.Mutex  // held while probing tagging (probeTagging)
	tagProbed bool        // tagging was probed and is safe

	stateMu   sync.Mutex
	stateKeys map[string]bool // upload state objects; nil until listed

	condMu  sync.Mutex // the verdict of probeConditionalWrites, once made:
	cond    condWrites
	condErr error
	condOK  bool
	// completeProbed, completeCond: completeConditions's verdict (condMu).
	completeProbed, completeCond bool
}

var (
	_ Sink    = (*S3)(nil)
	_ Locker  = (*S3)(nil)
	_ Resumer = (*S3)(nil)
)

// ParseS3URL splits "s3://bucket/prefix" into its bucket and prefix (which
// may be empty; surrounding slashes are dropped).
func ParseS3URL(s string) (bucket, prefix string, err error) {
	rest, ok := strings.CutPrefix(s, "s3://")
	if !ok {
		return "", "", fmt.Errorf("%q is not an s3:// URL", s)
	}
	bucket, prefix, _ = strings.Cut(rest, "/")
	if bucket == "" {
		return "", "", fmt.Errorf("%q names no bucket; use s3://bucket/prefix", s)
	}
	prefix = strings.Trim(prefix, "/")
	if prefix != "" {
		if err := ValidKey(prefix); err != nil {
			return "", "", fmt.Errorf("s3 URL %q: prefix: %w", s, err)
		}
	}
	return bucket, prefix, nil
}

// NewS3 returns a sink for cfg.Bucket. It does not contact the server; call
// Check to fail fast on a missing bucket, bad credentials or an unreachable
// endpoint.
func NewS3(ctx context.Context, cfg S3Config) (*S3, error) {
	if cfg.Bucket == "" {
		return nil, &PermanentError{Err: errors.New("s3 destination: no bucket given")}
	}
	prefix := strings.Trim(cfg.Prefix, "/")
	if prefix != "" {
		if err := ValidKey(prefix); err != nil {
			return nil, fmt.Errorf("s3 prefix: %w", err)
		}
		prefix += "/"
	}
	if cfg.PartSize == 0 {
		cfg.PartSize = DefaultS3PartSize
	}
	if cfg.PartSize < minS3PartSize {
		return nil, fmt.Errorf("s3 part size %d is below the minimum of %d bytes", cfg.PartSize, minS3PartSize)
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultS3Concurrency
	}
	var opts []func(*config.LoadOptions) error
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.HTTPClient != nil {
		opts = append(opts, config.WithHTTPClient(cfg.HTTPClient))
	}
	if cfg.AccessKeyID != "" || cfg.SecretAccessKey != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, "")))
	}
	opts = append(opts, config.WithLogger(sdkLogger{cfg.Logger}), config.WithRetryer(func() aws.Retryer {
		// No client-side retry quota: a burst of failures must not turn
		// into "retry quota exceeded" for unrelated calls.
		return retry.NewStandard(func(o *retry.StandardOptions) { o.RateLimiter = ratelimit.None })
	}))
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, &PermanentError{Err: fmt.Errorf("s3 configuration: %w", err)}
	}
	if awsCfg.Region == "" {
		awsCfg.Region = "us-east-1"
	}
	awsCfg.Credentials = withNoCredentialsError(awsCfg.Credentials, cfg.Logger)
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		if cfg.PathStyle {
			o.UsePathStyle = true
		}
		// Multipart objects have composite checksums a GET cannot check;
		// that is expected, not worth a warning on stderr.
		o.DisableLogOutputChecksumValidationSkipped = true
		o.APIOptions = append(o.APIOptions, addBoundAnswers)
	})
	endpoint := aws.ToString(client.Options().BaseEndpoint)
	if endpoint == "" {
		endpoint = "the AWS S3 endpoint of region " + awsCfg.Region
	}
	s := &S3{
		client:       client,
		bucket:       cfg.Bucket,
		prefix:       prefix,
		endpoint:     endpoint,
		partSize:     cfg.PartSize,
		concurrency:  cfg.Concurrency,
		memLimit:     cfg.MemoryLimit,
		abandonAfter: cfg.AbandonAfter,
		noLock:       cfg.NoLock,
	}
	if s.memLimit <= 0 {
		s.memLimit = DefaultS3MemoryLimit
	}
	if s.abandonAfter <= 0 {
		s.abandonAfter = DefaultS3AbandonAfter
	}
	s.mem = semaphore.NewWeighted(s.memLimit)
	return s, nil
}

func (s *S3) String() string { return "s3://" + s.bucket + "/" + s.prefix }

func (s *S3) full(key string) string { return s.prefix + key }

func (s *S3) url(key string) string { return "s3://" + s.bucket + "/" + s.full(key) }

// Check makes sure the bucket exists and the credentials may use it, so the
// caller can refuse an unusable destination before transferring anything.
// Its errors are one line naming the bucket and endpoint.
func (s *S3) Check(ctx context.Context) error {
	_, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(s.bucket)})
	if err == nil {
		return nil
	}
	if code := status(err); code >= 400 && code < 500 {
		// HEAD responses carry no error code; a GET tells a missing bucket
		// from bad credentials from a policy that denies access.
		_, lerr := s.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{
			Bucket: aws.String(s.bucket), Prefix: aws.String(s.prefix), MaxKeys: aws.Int32(1)})
		if lerr != nil {
			err = lerr
		}
		if status(err) == http.StatusNotFound {
			var ae smithy.APIError
			if !errors.As(err, &ae) || ae.ErrorCode() == "NotFound" {
				err = &smithy.GenericAPIError{Code: "NoSuchBucket"}
			}
		}
	}
	return s.classify("check", "", err)
}

func status(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// s3Error is one clean line for the user, still matching (errors.Is/As)
// what caused it.
type s3Error struct {
	msg  string
	errs []error
}

func (e *s3Error) Error() string   { return e.msg }
func (e *s3Error) Unwrap() []error { return e.errs }

// classify turns an SDK error into one line naming the bucket, the
// endpoint and what to do, marking what retrying cannot fix as permanent.
func (s *S3) classify(op, key string, err error) error {
	if err == nil {
		return nil
	}
	what := s.url(key)
	if key == "" {
		what = fmt.Sprintf("S3 bucket %q", s.bucket)
	}
	if errors.Is(err, ErrNoCredentials) {
		return &PermanentError{Err: &s3Error{msg: ErrNoCredentials.Error(), errs: []error{err}}}
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code := ae.ErrorCode()
		switch code {
		case "NoSuchKey", "NotFound":
			if key != "" {
				return &s3Error{msg: fmt.Sprintf("%s %s: not found", op, what), errs: []error{fs.ErrNotExist, err}}
			}
		case "NoSuchBucket":
			return &PermanentError{Err: &s3Error{
				msg:  fmt.Sprintf("S3 bucket %q does not exist at %s; create it or fix the bucket in --to (and --s3-endpoint)", s.bucket, s.endpoint),
				errs: []error{err}}}
		case "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "TokenRefreshRequired",
			"AuthorizationHeaderMalformed", "XAdminUserNotFound":
			return &PermanentError{Err: &s3Error{
				msg:  fmt.Sprintf("S3 at %s rejected the credentials for bucket %q (%s); check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE", s.endpoint, s.bucket, code),
				errs: []error{err}}}
		case "Forbidden":
			// A HEAD answered 403 without saying why.
			return &PermanentError{Err: &s3Error{
				msg:  fmt.Sprintf("S3 at %s refused access to bucket %q (HTTP 403): the credentials are wrong or may not use it; check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and the bucket policy", s.endpoint, s.bucket),
				errs: []error{err}}}
		case "AccessDenied", "AllAccessDisabled":
			return &PermanentError{Err: &s3Error{
				msg:  fmt.Sprintf("S3 at %s denied access to bucket %q (%s); check that the credentials may read and write it", s.endpoint, s.bucket, code),
				errs: []error{err}}}
		}
		msg := ae.ErrorMessage()
		if msg == "" {
			msg = http.StatusText(status(err))
		}
		return &s3Error{msg: fmt.Sprintf("%s %s at %s: %s: %s", op, what, s.endpoint, code, oneLine(msg)), errs: []error{err}}
	}
	if big := (*answerTooLargeError)(nil); errors.As(err, &big) {
		return &PermanentError{Err: &s3Error{msg: fmt.Sprintf("%s %s at %s: %v", op, what, s.endpoint, big), errs: []error{err}}}
	}
	var rse *smithyhttp.RequestSendError
	var ne net.Error
	if errors.As(err, &rse) || errors.As(err, &ne) {
		if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			return &s3Error{
				msg:  fmt.Sprintf("cannot reach S3 endpoint %s for bucket %q: %s; check --s3-endpoint (or AWS_ENDPOINT_URL_S3) and the network", s.endpoint, s.bucket, netCause(err)),
				errs: []error{err}}
		}
	}
	for _, cause := range []error{context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, cause) {
			return &s3Error{msg: fmt.Sprintf("%s %s: %v", op, what, cause), errs: []error{err}}
		}
	}
	return &s3Error{msg: fmt.Sprintf("%s %s: %s", op, what, oneLine(err.Error())), errs: []error{err}}
}

// netCause is the innermost useful text of a network error, e.g.
// "dial tcp 127.0.0.1:1: connect: connection refused".
func netCause(err error) string {
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe.Error()
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return oneLine(err.Error())
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

func contentType(key string) string {
	if t := mime.TypeByExtension(path.Ext(key)); t != "" {
		return t
	}
	return "application/octet-stream"
}

// userMetadata makes PutOptions.Metadata safe for S3 headers: lowercase
// names of letters, digits and dashes; values outside printable ASCII are
// RFC 2047-encoded, as S3 suggests.
func userMetadata(in map[string]string, sum string) map[string]string {
	out := make(map[string]string, len(in)+1)
	for k, v := range in {
		k = strings.Map(func(r rune) rune {
			switch {
			case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
				return r
			case r >= 'A' && r <= 'Z':
				return unicode.ToLower(r)
			}
			return '-'
		}, k)
		if k == "" || k == "sha256" {
			continue
		}
		for _, r := range v {
			if r < 0x20 || r > 0x7e {
				v = mime.QEncoding.Encode("utf-8", v)
				break
			}
		}
		out[k] = v
	}
	if sum != "" {
		out["sha256"] = sum
	}
	return out
}

// Put implements Sink. It starts the object afresh: an unfinished upload
// of key that an earlier Put left is aborted first.
func (s *S3) Put(ctx context.Context, key string, r io.Reader, opts PutOptions) (Info, error) {
	info, _, err := s.put(ctx, key, r, opts, precondition{})
	return info, err
}

// put is Put, made conditional on the version of the object it replaces by
// cond (see precondition), and returning the new version's ETag.
func (s *S3) put(ctx context.Context, key string, r io.Reader, opts PutOptions, cond precondition) (Info, string, error) {
	if err := ValidKey(key); err != nil {
		return Info{}, "", err
	}
	if opts.Size > maxS3ObjectSize {
		return Info{}, "", fmt.Errorf("put %s: the source declares %d bytes, more than the 5 TiB S3 allows in one object", s.url(key), opts.Size)
	}
	old, err := s.loadState(ctx, key)
	if err == nil {
		err = s.discard(ctx, key, old)
	}
	if err != nil {
		return Info{}, "", err
	}
	cr := newCheckedReader(ctx, r, opts.Size, 0, nil)
	u := &upload{s: s, key: key, opts: opts, cond: cond, st: &uploadState{PartSize: s.partSizeFor(opts.Size)}}
	if opts.Size > s.partSize {
		held, err := s.reserve(ctx, u.memory())
		if err != nil {
			return Info{}, "", err
		}
		defer s.mem.Release(held)
		return s.putMultipart(ctx, u, cr, nil)
	}
	// Small, or of unknown size: read up to a part to find out which.
	want := u.memory()
	if opts.Size >= 0 {
		want = opts.Size + 1
	}
	if inMemory(r) && want <= s.partSize+1 {
		want = 0 // its bytes are in memory already
	}
	held, err := s.reserve(ctx, want)
	if err != nil {
		return Info{}, "", err
	}
	defer func() { s.mem.Release(held) }()
	n := s.partSize
	if opts.Size >= 0 {
		n = opts.Size + 1 // one more, to see a stream longer than declared
	}
	buf, err := readPart(cr, nil, n)
	switch {
	case err == nil: // a whole part, size unknown: there may be more
		return s.putMultipart(ctx, u, cr, buf)
	case err == io.EOF:
		if held > int64(len(buf)) {
			s.mem.Release(held - int64(len(buf)))
			held = int64(len(buf))
		}
		return s.putSingle(ctx, key, buf, opts, cond)
	default:
		return Info{}, "", s.classify("put", key, err)
	}
}

// inMemory reports whether r reads from bytes already in memory.
func inMemory(r io.Reader) bool {
	switch r.(type) {
	case *bytes.Reader, *strings.Reader, *bytes.Buffer:
		return true
	}
	return false
}

// reserve waits until n bytes of buffers fit in the memory limit (all of it,
// if n is more) and returns how much it took. Small objects do not wait:
// their bytes are few, and queuing a manifest write behind large uploads
// would stall every transfer waiting for its record.
func (s *S3) reserve(ctx context.Context, n int64) (int64, error) {
	if n <= smallPut {
		return 0, nil
	}
	n = min(n, s.memLimit)
	if err := s.mem.Acquire(ctx, n); err != nil {
		return 0, err
	}
	return n, nil
}

// smallPut is the size up to which a Put's buffer is not counted against
// the memory limit: at most 2 × -j of them are buffered at once.
const smallPut = 1 << 20

func (s *S3) putSingle(ctx context.Context, key string, data []byte, opts PutOptions, cond precondition) (Info, string, error) {
	sum := sha256.Sum256(data)
	hexSum := hex.EncodeToString(sum[:])
	b64Sum := base64.StdEncoding.EncodeToString(sum[:])
	in := &s3.PutObjectInput{
		Bucket:            aws.String(s.bucket),
		Key:               aws.String(s.full(key)),
		Body:              bytes.NewReader(data), // in memory: the SDK may retry
		ContentLength:     aws.Int64(int64(len(data))),
		ContentType:       aws.String(contentType(key)),
		Metadata:          userMetadata(opts.Metadata, hexSum),
		ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
		ChecksumSHA256:    aws.String(b64Sum),
	}
	in.IfMatch, in.IfNoneMatch = cond.headers()
	out, err := s.client.PutObject(ctx, in)
	if err != nil {
		return Info{}, "", s.classify("put", key, err)
	}
	if err := s.checkObject(ctx, key, int64(len(data)), false, "", b64Sum); err != nil {
		return Info{}, "", err
	}
	return Info{Key: key, Size: int64(len(data)), SHA256: hexSum, ModTime: time.Now()}, aws.ToString(out.ETag), nil
}

// putMultipart starts a multipart upload for u and streams the object into
// it; first, if not nil, is its first part, read already.
func (s *S3) putMultipart(ctx context.Context, u *upload, cr *checkedReader, first []byte) (Info, string, error) {
	st, err := s.start(ctx, u.key, u.opts)
	if err != nil {
		return Info{}, "", err
	}
	u.st = st
	return u.run(ctx, cr, first)
}

// Stat implements Sink. SHA256 comes from the object's sha256 metadata.
func (s *S3) Stat(ctx context.Context, key string) (Info, error) {
	if err := ValidKey(key); err != nil {
		return Info{}, err
	}
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.full(key))})
	if err != nil {
		return Info{}, s.classify("stat", key, err)
	}
	info := Info{Key: key, Size: aws.ToInt64(out.ContentLength), ModTime: aws.ToTime(out.LastModified),
		SHA256: validSHA256(out.Metadata["sha256"])}
	if info.SHA256 == "" && strings.Contains(aws.ToString(out.ETag), "-") {
		info.SHA256 = s.sha256Tag(ctx, key) // a multipart object
	}
	return info, nil
}

// Open implements Sink.
func (s *S3) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := ValidKey(key); err != nil {
		return nil, err
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.full(key))})
	if err != nil {
		return nil, s.classify("open", key, err)
	}
	return out.Body, nil
}

// Delete implements Sink.
func (s *S3) Delete(ctx context.Context, key string) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.full(key))})
	if err != nil && status(err) != http.StatusNotFound {
		return s.classify("delete", key, err)
	}
	return nil
}

// List implements Sink, a page of ListObjectsV2 at a time (see listPage).
func (s *S3) List(ctx context.Context, prefix string) iter.Seq2[Info, error] {
	return func(yield func(Info, error) bool) {
		inState := isReserved(prefix)
		in := &s3.ListObjectsV2Input{Bucket: aws.String(s.bucket), Prefix: aws.String(s.full(prefix))}
		if s.maxKeys > 0 {
			in.MaxKeys = aws.Int32(s.maxKeys)
		}
		for {
			page, err := s.listPage(ctx, in)
			if err != nil {
				yield(Info{}, s.classify("list", prefix, err))
				return
			}
			for _, o := range page.objects {
				key := strings.TrimPrefix(o.key, s.prefix)
				if ValidKey(key) != nil || (isReserved(key) && !inState) {
					continue
				}
				if !yield(Info{Key: key, Size: o.size, ModTime: o.modTime}, nil) {
					return
				}
			}
			// On while the page says it is truncated and gives a token,
			// as the SDK's paginator does; but not twice the same token,
			// which would loop forever.
			if !page.truncated || page.next == "" || page.next == aws.ToString(in.ContinuationToken) {
				return
			}
			in.ContinuationToken = aws.String(page.next)
		}
	}
}
