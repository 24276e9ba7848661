package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
	"github.com/artifact-sync/artifact-sync/sink/sinktest"
)

// TestNoS3CredentialsIsOneLine: a pull or verify to S3 with no AWS
// credentials anywhere says so in one line, with exit 2, instead of the
// SDK's chain of instance-metadata errors and its "SDK ... WARN falling
// back to IMDSv1" line. The instance metadata address is answered by a web
// server that is not IMDS (403 to everything), as a proxy or a container
// runtime does on many machines that are not EC2. With -v the SDK's lines
// are the tool's debug log lines, in --log-format.
func TestNoS3CredentialsIsOneLine(t *testing.T) {
	s3env := sinktest.NewS3Bucket(t)
	w, _ := smallWorld(2, 1000)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
	notIMDS := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "forbidden", http.StatusForbidden)
	}))
	t.Cleanup(notIMDS.Close)
	env := append(toolEnv(t, srv), "AWS_REGION="+s3env.Region, "AWS_EC2_METADATA_SERVICE_ENDPOINT="+notIMDS.URL)
	to := append([]string{"--to", "s3://" + s3env.Bucket + "/mirror"}, s3Args(s3env)...)
	const want = "artifact-sync: no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE\n"

	for _, args := range [][]string{append([]string{"pull", slugArg}, to...), append([]string{"verify"}, to...)} {
		r := runTool(t, env, time.Minute, args...)
		wantCode(t, r, 2)
		if r.stderr != want {
			t.Errorf("%s: stderr:\n%s\nwant:\n%s", args[0], r.stderr, want)
		}
	}
	if n := srv.DownloadTotals().Started; n != 0 {
		t.Errorf("%d downloads without a destination to write to", n)
	}

	r := runTool(t, env, time.Minute, append([]string{"pull", slugArg, "-v", "--log-format", "json"}, to...)...)
	wantCode(t, r, 2)
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	if last := lines[len(lines)-1] + "\n"; last != want {
		t.Errorf("last line %q, want %q", last, want)
	}
	sdk := 0
	for _, line := range lines[:len(lines)-1] {
		var rec struct{ Level, Msg string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("with --log-format json, a line that is not JSON: %s", line)
			continue
		}
		if strings.Contains(rec.Msg, "IMDSv1") {
			sdk++
			if rec.Level != "DEBUG" {
				t.Errorf("the SDK's line at level %s, want DEBUG: %s", rec.Level, line)
			}
		}
	}
	if sdk == 0 {
		t.Errorf("-v --log-format json: no debug line with the SDK's IMDSv1 fallback:\n%s", r.stderr)
	}
}

// TestS3CredentialsFromInstanceRole: on EC2, a job with an instance profile
// and nothing else gets its credentials from the instance metadata service,
// as the AWS SDK's chain ends; the tool keeps that path. The metadata
// service here speaks IMDSv2 and hands out the test server's keys as the
// role's.
func TestS3CredentialsFromInstanceRole(t *testing.T) {
	s3env := sinktest.NewS3Bucket(t)
	w, arts := smallWorld(3, 1000)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
	const token = "imds-session-token"
	imds := http.NewServeMux()
	imds.HandleFunc("PUT /latest/api/token", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", "21600")
		w.Write([]byte(token))
	})
	imds.HandleFunc("GET /latest/meta-data/iam/security-credentials/{role...}", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Aws-Ec2-Metadata-Token") != token {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		if r.PathValue("role") == "" {
			w.Write([]byte("ci-runner\n"))
			return
		}
		json.NewEncoder(w).Encode(map[string]string{
			"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": s3env.AccessKey, "SecretAccessKey": s3env.SecretKey,
			"Token": "", "Expiration": time.Now().Add(time.Hour).UTC().Format(time.RFC3339), "LastUpdated": time.Now().UTC().Format(time.RFC3339),
		})
	})
	meta := httptest.NewServer(imds)
	t.Cleanup(meta.Close)

	env := append(toolEnv(t, srv), "AWS_REGION="+s3env.Region, "AWS_EC2_METADATA_SERVICE_ENDPOINT="+meta.URL)
	d := s3Dest(t, srv, s3env, "mirror")
	d.env = env
	r := runTool(t, env, time.Minute, d.pull()...)
	wantCode(t, r, 0)
	d.check(t, mirrorOf(arts...), true)
}
