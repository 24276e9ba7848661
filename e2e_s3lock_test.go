package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
	"github.com/artifact-sync/artifact-sync/sink/sinktest"
)

// TestS3PullsRefuseServerWithoutConditionalWrites: two pulls racing on one
// prefix of a server that ignores conditional writes both refuse (exit 2,
// one line naming the gap and --s3-lock=none) before writing anything, so
// nothing is lost; with --s3-lock=none a pull runs, and warns.
func TestS3PullsRefuseServerWithoutConditionalWrites(t *testing.T) {
	w, arts := smallWorld(4, 64<<10)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
	env := sinktest.NewFakeS3(t, true)
	d := s3Dest(t, srv, env, "mirror")
	d.check = nil // gofakes3 lists differently; the bucket is looked at below

	a := startTool(t, d.env, d.pull()...)
	b := startTool(t, d.env, d.pull()...)
	for _, p := range []*proc{a, b} {
		r := p.wait(time.Minute)
		wantCode(t, r, 2)
		wantOneLine(t, r, "does not enforce conditional writes", "If-None-Match", "--s3-lock=none")
	}
	if n := srv.DownloadTotals().Started; n != 0 {
		t.Errorf("the refused runs downloaded %d artifacts", n)
	}
	if keys := bucketKeys(t, env); len(keys) != 0 {
		t.Errorf("the refused runs wrote %q", keys)
	}

	r := runTool(t, d.env, time.Minute, d.pull("--s3-lock=none")...)
	wantCode(t, r, 0)
	if !strings.Contains(r.stderr, "--s3-lock=none: running without a lock") {
		t.Errorf("no warning about running without a lock on stderr:\n%s", r.stderr)
	}
	if keys := bucketKeys(t, env); len(keys) < len(arts) {
		t.Errorf("after the pull without a lock the bucket holds %q", keys)
	}
}

func bucketKeys(t *testing.T, env sinktest.S3Env) []string {
	t.Helper()
	out, err := env.Client().ListObjectsV2(t.Context(), &s3.ListObjectsV2Input{Bucket: aws.String(env.Bucket)})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	return keys
}

// TestS3LostLeaseStopsTheRun: when another run takes the lease over (here
// written behind the tool's back, as a run whose clock ran ahead would),
// the run finds out within seconds and stops with the new holder in one
// line and exit 1 (a rerun resumes once the other run is done: retry
// scripts must retry); the summary counts what it did not finish as failed;
// its release leaves the new holder's lease alone, and nothing it writes
// afterwards reaches the manifest.
func TestS3LostLeaseStopsTheRun(t *testing.T) {
	w := circlecitest.NewWorld()
	j := w.AddProject(slugArg, "main").AddPipeline("main").AddWorkflow("build").AddJob("build", circlecitest.JobOptions{})
	big := j.AddArtifact(0, "dist/big.bin", 64<<20)
	for i := range 3 {
		j.AddArtifact(0, fmt.Sprintf("logs/%d.log", i), 1<<10)
	}
	// 64 MiB at 2 MiB/s: the large file takes half a minute.
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken, Bandwidth: 2 << 20})
	env := sinktest.NewS3Bucket(t)
	d := s3Dest(t, srv, env, "mirror")

	p := startTool(t, d.env, d.pull("-j", "2")...)
	if !p.waitUntil(func() bool { return srv.Downloads(big).Bytes > 1<<20 }) {
		t.Fatalf("the run ended before the large download:\n%s", p.stderr.String())
	}
	thief, _ := json.Marshal(map[string]any{"holder": "ci-9 pid 4242 run R2", "since": time.Now().UTC(), "expires": time.Now().Add(time.Hour).UTC()})
	lockKey := aws.String("mirror/.artifact-sync/lock")
	if _, err := env.Client().PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(env.Bucket), Key: lockKey, Body: bytes.NewReader(thief)}); err != nil {
		t.Fatal(err)
	}
	taken := time.Now()
	r := p.wait(time.Minute)
	if d := time.Since(taken); d > 15*time.Second {
		t.Errorf("the run went on for %s after its lease was taken over", d)
	}
	wantCode(t, r, 1)
	line := lastLine(r.stderr)
	if want := "artifact-sync: lost the lock on s3://" + env.Bucket + "/mirror/.artifact-sync/lock: taken over by ci-9 pid 4242 run R2 at "; !strings.HasPrefix(line, want) {
		t.Errorf("last line of stderr does not say %q:\n%s", want, r.stderr)
	}
	t.Logf("stderr: %s", line)
	if m := regexp.MustCompile(`4 artifacts: (\d+) transferred.*, (\d+) failed`).FindStringSubmatch(r.stdout); m == nil || m[1] == "4" || m[2] == "0" {
		t.Errorf("summary does not count the unfinished artifact as failed:\n%s", r.stdout)
	}
	out, err := env.Client().GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(env.Bucket), Key: lockKey})
	if err != nil {
		t.Fatalf("the new holder's lease is gone: %v", err)
	}
	b, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if !bytes.Contains(b, []byte("ci-9 pid 4242 run R2")) {
		t.Errorf("the new holder's lease was overwritten: %s", b)
	}
}
