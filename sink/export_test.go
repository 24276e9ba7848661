package sink

import (
	"context"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// ListedPage is one ListObjectsV2 page as List reads it.
type ListedPage struct {
	Keys      []string
	Sizes     []int64
	Times     []time.Time
	Truncated bool
	Next      string
}

func (p listPage) export() ListedPage {
	e := ListedPage{Truncated: p.truncated, Next: p.next}
	for _, o := range p.objects {
		e.Keys = append(e.Keys, o.key)
		e.Sizes = append(e.Sizes, o.size)
		e.Times = append(e.Times, o.modTime)
	}
	return e
}

// ParseListObjectsV2 is parseListObjectsV2.
func ParseListObjectsV2(body []byte) (ListedPage, bool) {
	p, ok := parseListObjectsV2(body)
	return p.export(), ok
}

// ListPage requests one page of the whole bucket as List does; bySDK says
// the SDK decoded it (parseListObjectsV2 did not take it).
func (s *S3) ListPage(ctx context.Context, token string, maxKeys int32) (page ListedPage, bySDK bool, err error) {
	in := &s3.ListObjectsV2Input{Bucket: aws.String(s.bucket)}
	if token != "" {
		in.ContinuationToken = aws.String(token)
	}
	if maxKeys > 0 {
		in.MaxKeys = aws.Int32(maxKeys)
	}
	p, err := s.listPage(ctx, in)
	return p.export(), p.sdk, err
}

// SetMaxKeys makes List ask for pages of n keys.
func (s *S3) SetMaxKeys(n int32) { s.maxKeys = n }
