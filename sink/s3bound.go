package sink

import (
	"context"
	"fmt"
	"io"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// maxS3Answer bounds the body of every S3 answer that is read whole into
// memory: listings (ListObjectsV2, ListMultipartUploads, ListParts),
// results and error documents; only an object's own bytes (a successful
// GetObject) are streamed without it. The largest answer an S3 server
// sends is a listing page of 1,000 entries: keys of at most 1,024 bytes,
// each byte at most 6 once escaped for XML, and under 1 KiB of other
// fields an entry, about 7 MiB. 32 MiB leaves four times that, while a
// server that sends without end costs at most 32 MiB of memory per request.
const maxS3Answer = 32 << 20

// boundAnswers sits between the SDK's deserializers (and fastListDecoder)
// and the transport, and holds every answer's body but an object's bytes
// to maxS3Answer.
type boundAnswers struct{}

func (boundAnswers) ID() string { return "ArtifactSyncBoundAnswers" }

func (boundAnswers) HandleDeserialize(ctx context.Context, in middleware.DeserializeInput, next middleware.DeserializeHandler) (
	middleware.DeserializeOutput, middleware.Metadata, error,
) {
	out, md, err := next.HandleDeserialize(ctx, in)
	if err != nil {
		return out, md, err
	}
	resp, ok := out.RawResponse.(*smithyhttp.Response)
	if !ok || resp.Body == nil {
		return out, md, nil
	}
	op := awsmiddleware.GetOperationName(ctx)
	if op == "GetObject" && resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return out, md, nil
	}
	resp.Body = &boundedAnswer{ReadCloser: resp.Body, left: maxS3Answer, op: op}
	return out, md, nil
}

// addBoundAnswers installs boundAnswers on a client's every operation.
func addBoundAnswers(st *middleware.Stack) error {
	return st.Deserialize.Insert(boundAnswers{}, "OperationDeserializer", middleware.After)
}

// answerTooLargeError is the error of an answer past maxS3Answer: the
// server is no S3 server, or a broken one, and asking again would not help.
type answerTooLargeError struct{ op string }

func (e *answerTooLargeError) Error() string {
	return fmt.Sprintf("the server answered %s with more than %d MiB, more than any S3 answer holds: stopped reading it; check that --s3-endpoint names an S3 server", e.op, maxS3Answer>>20)
}

// boundedAnswer fails a read once more than maxS3Answer bytes arrived.
// After that, or once closed, it reads as ended: the SDK drains every body
// it is done with, and would warn on stderr about one it cannot drain.
type boundedAnswer struct {
	io.ReadCloser
	left int64
	op   string
	over bool // past the bound, or closed
}

func (b *boundedAnswer) Read(p []byte) (int, error) {
	if b.over {
		return 0, io.EOF
	}
	if b.left <= 0 {
		// One byte more tells a body of exactly the bound from a longer one.
		var one [1]byte
		if n, err := b.ReadCloser.Read(one[:]); n == 0 {
			return 0, err
		}
		b.over = true
		return 0, &PermanentError{Err: &answerTooLargeError{b.op}}
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *boundedAnswer) Close() error {
	b.over = true
	return b.ReadCloser.Close()
}
