package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/smithy-go/logging"
)

// ErrNoCredentials is matched by the error of an S3 request made when
// nothing gave AWS credentials: no AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY, no profile, no web identity or container
// credentials, and no EC2 instance role (the last place the AWS SDK looks).
var ErrNoCredentials = errors.New("no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE")

// sdkLogger passes the AWS SDK's own log lines to the tool's logger, at
// debug level: every one the SDK writes at its WARN level is about the
// SDK's own workings (falling back to IMDSv1 where a proxy answers the
// instance metadata address, a response body it could not discard for
// connection reuse, a Date header it could not parse), none about the
// transfer, whose failures the sink reports itself (see classify). A nil
// logger drops them, where the SDK would print them raw to stderr.
type sdkLogger struct{ log *slog.Logger }

func (l sdkLogger) Logf(class logging.Classification, format string, v ...any) {
	if l.log == nil {
		return
	}
	l.log.Debug("AWS SDK: "+fmt.Sprintf(format, v...), "sdk_level", string(class))
}

// instanceCredentials is the credential provider the AWS SDK falls back
// to when nothing else gave credentials: the EC2 instance role, from the
// instance metadata service (IMDS). On EC2 it is how a job with an
// instance profile gets its credentials, so it is kept; anywhere else its
// failure means that no credentials were given, and its error says so
// (ErrNoCredentials) instead of the SDK's chain of IMDS errors, which go to
// the debug log.
type instanceCredentials struct {
	aws.CredentialsProvider
	log *slog.Logger
}

// withNoCredentialsError wraps creds in instanceCredentials if the SDK's
// chain ended at the EC2 instance role.
func withNoCredentialsError(creds aws.CredentialsProvider, log *slog.Logger) aws.CredentialsProvider {
	cache, ok := creds.(*aws.CredentialsCache)
	if !ok || !cache.IsCredentialsProvider((*ec2rolecreds.Provider)(nil)) {
		return creds
	}
	return instanceCredentials{creds, log}
}

func (p instanceCredentials) Retrieve(ctx context.Context) (aws.Credentials, error) {
	c, err := p.CredentialsProvider.Retrieve(ctx)
	if err != nil && ctx.Err() == nil {
		if p.log != nil {
			p.log.Debug("no AWS credentials in the environment or a profile, and none from the EC2 instance metadata service", "error", err)
		}
		return c, &noCredentialsError{err}
	}
	return c, err
}

// noCredentialsError is ErrNoCredentials, keeping the SDK's error.
type noCredentialsError struct{ err error }

func (e *noCredentialsError) Error() string   { return ErrNoCredentials.Error() }
func (e *noCredentialsError) Unwrap() []error { return []error{ErrNoCredentials, e.err} }
