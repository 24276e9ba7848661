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
	"mime"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
	"unicode"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
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
	minS3PartSize        = manager.MinUploadPartSize // 5 MiB, S3's minimum
	maxS3CopySize        = 5 << 30                   // CopyObject's limit
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
}

// S3 is a Sink that writes objects below a prefix of an S3 bucket.
//
// Put streams objects of any size without a temporary file. It buffers up
// to PartSize bytes; a stream that ends within that goes up in one
// PutObject with an x-amz-checksum-sha256 the server verifies. A longer
// stream becomes a multipart upload (the SDK's upload manager) with a
// CRC32 checksum on every part, which the server verifies; a failed or
// cancelled upload is aborted so no multipart upload is left open, and
// nothing appears at the key until CompleteMultipartUpload succeeds.
//
// Memory: one Put holds at most about (Concurrency+3) × PartSize bytes of
// buffers: Concurrency parts in flight, the one being filled, the upload
// manager's copy of the first part and, when PutOptions.Size is unknown,
// the first part read to choose between PutObject and multipart (with a
// known size above PartSize, (Concurrency+2) × PartSize). That is 56 MiB
// with the defaults of 8 MiB × 4 (48 MiB for a known size) and 35 MiB with
// the minimum 5 MiB × 4. Concurrent Puts each need their own, within
// S3Config.MemoryLimit for all of them together. S3 allows
// 10,000 parts, so an object of unknown size is limited to 10,000 ×
// PartSize (78 GiB with the default); for a known larger size the parts,
// and the memory, grow to fit.
//
// Objects carry the caller's PutOptions.Metadata and their SHA-256 as user
// metadata (x-amz-meta-sha256), which Stat reports. S3 fixes metadata when
// an upload starts, so a multipart object gets its sha256 afterwards by a
// server-side CopyObject onto itself; if that fails, or the object is over
// 5 GiB (CopyObject's limit), the object stays without it and Stat reports
// no SHA256 (Put's Info still has it). Content-Type follows the key's
// extension.
//
// The SDK's own retries are off for uploads, whose body cannot be
// rewound: the caller retries a transfer as a whole. Small idempotent
// calls (Head, Get, List, Delete) keep the SDK's retries.
type S3 struct {
	client      *s3.Client
	uploader    *manager.Uploader
	bucket      string
	prefix      string // "" or ending in "/"
	endpoint    string // for messages
	partSize    int64
	concurrency int
	memLimit    int64
	mem         *semaphore.Weighted // bytes of buffers Puts may hold
}

var (
	_ Sink   = (*S3)(nil)
	_ Locker = (*S3)(nil)
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

// noRetry turns the SDK's retries off for one call.
func noRetry(o *s3.Options) { o.Retryer = aws.NopRetryer{} }

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
	opts = append(opts, config.WithRetryer(func() aws.Retryer {
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
	})
	endpoint := aws.ToString(client.Options().BaseEndpoint)
	if endpoint == "" {
		endpoint = "the AWS S3 endpoint of region " + awsCfg.Region
	}
	s := &S3{
		client:      client,
		bucket:      cfg.Bucket,
		prefix:      prefix,
		endpoint:    endpoint,
		partSize:    cfg.PartSize,
		concurrency: cfg.Concurrency,
		memLimit:    cfg.MemoryLimit,
	}
	if s.memLimit <= 0 {
		s.memLimit = DefaultS3MemoryLimit
	}
	s.mem = semaphore.NewWeighted(s.memLimit)
	s.uploader = manager.NewUploader(client, func(u *manager.Uploader) {
		u.PartSize = cfg.PartSize
		u.Concurrency = cfg.Concurrency
		u.LeavePartsOnError = false
		u.ClientOptions = append(u.ClientOptions, noRetry)
	})
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

// Put implements Sink.
func (s *S3) Put(ctx context.Context, key string, r io.Reader, opts PutOptions) (Info, error) {
	if err := ValidKey(key); err != nil {
		return Info{}, err
	}
	cr := newCheckedReader(ctx, r, opts.Size, 0, nil)
	// S3 allows 10,000 parts: a known size that needs more gets bigger
	// parts (see putMultipart), and needs more memory.
	part := max(s.partSize, (opts.Size+int64(manager.MaxUploadParts)-1)/int64(manager.MaxUploadParts))
	multipart := int64(s.concurrency+3) * part
	if opts.Size >= 0 && opts.Size > s.partSize {
		held, err := s.reserve(ctx, key, multipart)
		if err != nil {
			return Info{}, err
		}
		defer s.mem.Release(held)
		return s.putMultipart(ctx, key, cr, cr, opts)
	}
	n := s.partSize + 1
	want := multipart // it may turn out longer than a part
	if opts.Size >= 0 {
		n = opts.Size + 1
		want = n
	}
	held, err := s.reserve(ctx, key, want)
	if err != nil {
		return Info{}, err
	}
	defer func() { s.mem.Release(held) }()
	buf := make([]byte, n)
	m, err := fill(cr, buf)
	switch {
	case err == nil: // longer than a part, size unknown
		return s.putMultipart(ctx, key, io.MultiReader(bytes.NewReader(buf[:m]), cr), cr, opts)
	case err == io.EOF:
		if held > n {
			s.mem.Release(held - n)
			held = n
		}
		return s.putSingle(ctx, key, buf[:m], opts)
	default:
		return Info{}, s.classify("put", key, err)
	}
}

// reserve waits until n bytes of buffers fit in the memory limit (all of it,
// if n is more) and returns how much it took. Small objects and the tool's
// own state (the manifest, the lock) do not wait: their bytes are few or
// already in memory, and queuing a journal write behind large uploads
// would stall every transfer waiting for its record.
func (s *S3) reserve(ctx context.Context, key string, n int64) (int64, error) {
	if n <= smallPut || strings.HasPrefix(key, stateDir+"/") {
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

// fill reads into buf until it is full (nil error), the stream ends
// (io.EOF) or fails. Unlike io.ReadFull it passes io.ErrUnexpectedEOF from
// r through as the failure it is.
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (s *S3) putSingle(ctx context.Context, key string, data []byte, opts PutOptions) (Info, error) {
	sum := sha256.Sum256(data)
	hexSum := hex.EncodeToString(sum[:])
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:            aws.String(s.bucket),
		Key:               aws.String(s.full(key)),
		Body:              bytes.NewReader(data),
		ContentLength:     aws.Int64(int64(len(data))),
		ContentType:       aws.String(contentType(key)),
		Metadata:          userMetadata(opts.Metadata, hexSum),
		ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
		ChecksumSHA256:    aws.String(base64.StdEncoding.EncodeToString(sum[:])),
	}, noRetry)
	if err != nil {
		return Info{}, s.classify("put", key, err)
	}
	return Info{Key: key, Size: int64(len(data)), SHA256: hexSum, ModTime: time.Now()}, nil
}

// putMultipart uploads body (which ends with cr) with the upload manager,
// then records the SHA-256 cr computed with a CopyObject onto itself.
func (s *S3) putMultipart(ctx context.Context, key string, body io.Reader, cr *checkedReader, opts PutOptions) (Info, error) {
	out, err := s.uploader.Upload(ctx, &s3.PutObjectInput{
		Bucket:      aws.String(s.bucket),
		Key:         aws.String(s.full(key)),
		Body:        body,
		ContentType: aws.String(contentType(key)),
		Metadata:    userMetadata(opts.Metadata, ""),
	}, func(u *manager.Uploader) {
		// S3 allows 10,000 parts: a known size that needs more gets
		// bigger parts (and more memory); an unknown one is limited to
		// 10,000 × PartSize.
		if need := (opts.Size + int64(manager.MaxUploadParts) - 1) / int64(manager.MaxUploadParts); need > u.PartSize {
			u.PartSize = need
		}
	})
	if err != nil {
		var mu manager.MultiUploadFailure
		if errors.As(err, &mu) {
			// The manager aborts with the caller's context, which is
			// useless once it is cancelled; abort again on our own.
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			s.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{
				Bucket: aws.String(s.bucket), Key: aws.String(s.full(key)), UploadId: aws.String(mu.UploadID()),
			})
			cancel()
		}
		if cr.err != nil {
			err = errors.Join(cr.err, err)
			return Info{}, &s3Error{msg: fmt.Sprintf("put %s: %v", s.url(key), cr.err), errs: []error{err}}
		}
		return Info{}, s.classify("put", key, err)
	}
	info := Info{Key: key, Size: cr.n, SHA256: cr.sum(), ModTime: time.Now()}
	if info.Size <= maxS3CopySize {
		src := s.bucket + "/" + s.full(key)
		s.client.CopyObject(ctx, &s3.CopyObjectInput{
			Bucket:            aws.String(s.bucket),
			Key:               aws.String(s.full(key)),
			CopySource:        aws.String(url.PathEscape(src)),
			CopySourceIfMatch: out.ETag,
			MetadataDirective: types.MetadataDirectiveReplace,
			ContentType:       aws.String(contentType(key)),
			Metadata:          userMetadata(opts.Metadata, info.SHA256),
		})
	}
	return info, nil
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
	info := Info{Key: key, Size: aws.ToInt64(out.ContentLength), ModTime: aws.ToTime(out.LastModified)}
	if v := out.Metadata["sha256"]; len(v) == 64 {
		if _, err := hex.DecodeString(v); err == nil {
			info.SHA256 = strings.ToLower(v)
		}
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

// List implements Sink, a page of ListObjectsV2 at a time.
func (s *S3) List(ctx context.Context, prefix string) iter.Seq2[Info, error] {
	return func(yield func(Info, error) bool) {
		inState := isReserved(prefix)
		p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
			Bucket: aws.String(s.bucket), Prefix: aws.String(s.full(prefix)),
		})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				yield(Info{}, s.classify("list", prefix, err))
				return
			}
			for _, o := range page.Contents {
				key := strings.TrimPrefix(aws.ToString(o.Key), s.prefix)
				if ValidKey(key) != nil || (isReserved(key) && !inState) {
					continue
				}
				info := Info{Key: key, Size: aws.ToInt64(o.Size), ModTime: aws.ToTime(o.LastModified)}
				if !yield(info, nil) {
					return
				}
			}
		}
	}
}
