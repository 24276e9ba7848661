package sinktest

import (
	"context"
	"crypto/rand"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/artifact-sync/artifact-sync/sink"
)

// Environment variables that point the S3 tests at a server.
const (
	EnvEndpoint  = "ARTIFACT_SYNC_TEST_S3_ENDPOINT"   // e.g. http://127.0.0.1:7070
	EnvAccessKey = "ARTIFACT_SYNC_TEST_S3_ACCESS_KEY" // default testkey
	EnvSecretKey = "ARTIFACT_SYNC_TEST_S3_SECRET_KEY" // default testsecret123
	EnvRegion    = "ARTIFACT_SYNC_TEST_S3_REGION"     // default us-east-1
)

// S3Env describes a bucket made for one test on a real S3-compatible server.
type S3Env struct {
	Endpoint  string
	Bucket    string
	AccessKey string
	SecretKey string
	Region    string
}

const startServer = `start an S3 server and point the tests at it, e.g.:
  S3DIR=$(mktemp -d); versitygw --port 127.0.0.1:7070 --access testkey --secret testsecret123 --region us-east-1 --health /health --quiet posix "$S3DIR" &
  export ` + EnvEndpoint + `=http://127.0.0.1:7070
(.ci/run does this; build the server with
  GOBIN="$HOME/.cache/artifact-sync-ci/bin" go install github.com/versity/versitygw/cmd/versitygw@v1.8.0)`

// NewS3Bucket creates a new, uniquely named bucket on the server named by
// $ARTIFACT_SYNC_TEST_S3_ENDPOINT and removes it, with everything in it and
// any open multipart upload, when the test ends. Without that variable the
// test is skipped, except when $CI is "true": S3 tests must never silently
// skip in CI, so there it fails.
func NewS3Bucket(t testing.TB) S3Env {
	t.Helper()
	endpoint := os.Getenv(EnvEndpoint)
	if endpoint == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("$%s is not set, and S3 tests must not skip in CI; %s", EnvEndpoint, startServer)
		}
		noteSkip(t)
		t.Skipf("$%s is not set; to run the S3 tests, %s", EnvEndpoint, startServer)
	}
	env := S3Env{
		Endpoint:  endpoint,
		Bucket:    "ast-" + strings.ToLower(rand.Text()[:16]),
		AccessKey: envOr(EnvAccessKey, "testkey"),
		SecretKey: envOr(EnvSecretKey, "testsecret123"),
		Region:    envOr(EnvRegion, "us-east-1"),
	}
	client := env.Client()
	ctx := context.Background()
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(env.Bucket)}); err != nil {
		t.Fatalf("creating test bucket %s at %s: %v", env.Bucket, endpoint, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := env.empty(ctx, client); err != nil {
			t.Errorf("emptying test bucket %s: %v", env.Bucket, err)
			return
		}
		if _, err := client.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(env.Bucket)}); err != nil {
			t.Errorf("deleting test bucket %s: %v", env.Bucket, err)
		}
	})
	return env
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// Client returns an S3 client for the server, for looking behind a sink's
// back (e.g. ListMultipartUploads).
func (e S3Env) Client() *s3.Client {
	return s3.New(s3.Options{
		BaseEndpoint: aws.String(e.Endpoint),
		Region:       e.Region,
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(e.AccessKey, e.SecretKey, ""),
	})
}

// Config returns the sink configuration for the bucket, below prefix, with
// the minimum part size (5 MiB) so that modest objects go up in multipart.
func (e S3Env) Config(prefix string) sink.S3Config {
	return sink.S3Config{
		Bucket:          e.Bucket,
		Prefix:          prefix,
		Endpoint:        e.Endpoint,
		Region:          e.Region,
		PathStyle:       true,
		AccessKeyID:     e.AccessKey,
		SecretAccessKey: e.SecretKey,
		PartSize:        5 << 20,
	}
}

// NewS3 returns a sink for the bucket below prefix.
func (e S3Env) NewS3(t testing.TB, prefix string) *sink.S3 {
	t.Helper()
	s, err := sink.NewS3(context.Background(), e.Config(prefix))
	if err != nil {
		t.Fatalf("NewS3: %v", err)
	}
	return s
}

// OpenUploads lists the multipart uploads open in the bucket.
func (e S3Env) OpenUploads(t testing.TB) []string {
	t.Helper()
	out, err := e.Client().ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String(e.Bucket)})
	if err != nil {
		t.Fatalf("ListMultipartUploads: %v", err)
	}
	var keys []string
	for _, u := range out.Uploads {
		keys = append(keys, aws.ToString(u.Key))
	}
	return keys
}

func (e S3Env) empty(ctx context.Context, client *s3.Client) error {
	ups, err := client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(e.Bucket)})
	if err != nil {
		return err
	}
	for _, u := range ups.Uploads {
		client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(e.Bucket), Key: u.Key, UploadId: u.UploadId})
	}
	p := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: aws.String(e.Bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return err
		}
		if len(page.Contents) == 0 {
			continue
		}
		var ids []types.ObjectIdentifier
		for _, o := range page.Contents {
			ids = append(ids, types.ObjectIdentifier{Key: o.Key})
		}
		for _, id := range ids {
			if _, err := client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(e.Bucket), Key: id.Key}); err != nil {
				return err
			}
		}
	}
	return nil
}
