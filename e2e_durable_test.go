package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
	"github.com/artifact-sync/artifact-sync/sink/sinktest"
)

// A full-length file of zeros where an artifact was (what a power cut or a
// failing disk leaves) passes a plain pull, which compares sizes; pull
// --verify re-hashes what the manifest records and fetches it again, and
// only it. On S3 the same, for an object overwritten at the same size.
func TestPullVerifyRepairsAZeroedFile(t *testing.T) {
	for _, where := range []string{"local", "s3"} {
		t.Run(where, func(t *testing.T) {
			w, arts := smallWorld(6, 3000)
			srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
			zeroed := arts[2]
			k := key(zeroed.Job().Number(), 0, zeroed.Path())
			zeros := make([]byte, zeroed.Size())
			var d dest
			var zero func()
			if where == "local" {
				d = localDest(t, srv)
				zero = func() {
					if err := os.WriteFile(filepath.Join(d.to, filepath.FromSlash(k)), zeros, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			} else {
				env := sinktest.NewS3Bucket(t)
				d = s3Dest(t, srv, env, "mirror")
				zero = func() {
					_, err := env.Client().PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(env.Bucket), Key: aws.String("mirror/" + k), Body: bytes.NewReader(zeros)})
					if err != nil {
						t.Fatal(err)
					}
				}
			}
			wantCode(t, runTool(t, d.env, time.Minute, d.pull("--json")...), 0)
			zero()
			r := runTool(t, d.env, time.Minute, d.pull("--json")...)
			wantCode(t, r, 0)
			if s := pullSummaryOf(t, r); s.Transferred != 0 {
				t.Fatalf("a plain pull transferred %d, want 0 (it compares sizes only)", s.Transferred)
			}
			before := srv.Downloads(zeroed).Completed
			r = runTool(t, d.env, time.Minute, d.pull("--verify", "--json")...)
			wantCode(t, r, 0)
			if s := pullSummaryOf(t, r); s.Transferred != 1 || s.Skipped != len(arts)-1 || s.Failed != 0 {
				t.Errorf("pull --verify: %+v, want the zeroed file alone fetched again", s)
			}
			if got := srv.Downloads(zeroed).Completed - before; got != 1 {
				t.Errorf("the zeroed artifact was downloaded %d times, want 1", got)
			}
			d.check(t, mirrorOf(arts...), true)
			r = runTool(t, d.env, time.Minute, append(d.verify(), "--download")...)
			wantCode(t, r, 0)
		})
	}
}

type pullCounts struct {
	Artifacts, Transferred, Skipped, Failed int
	DiskErrors                              int    `json:"disk_errors"`
	WrittenAgain                            int    `json:"written_again"`
	Error                                   string `json:"error"`
}

func pullSummaryOf(t *testing.T, r e2eResult) pullCounts {
	t.Helper()
	var s pullCounts
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("pull --json printed %q: %v", r.stdout, err)
	}
	return s
}
