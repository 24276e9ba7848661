package main

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
	"github.com/artifact-sync/artifact-sync/sink/sinktest"
)

// TestS3TaggingServerKeepsObjectsWhole: a pull of multipart artifacts to a
// server whose PUT ?tagging replaces the object with the tagging XML and
// answers 200 (gofakes3 1.2.0: played in front of the real server, and
// gofakes3 itself) leaves every object byte-exact and recorded, verify
// passes, and a repair rerun transfers nothing and destroys nothing.
func TestS3TaggingServerKeepsObjectsWhole(t *testing.T) {
	real := sinktest.NewS3Bucket(t)
	double := sinktest.NewQuirkyS3(t, real, sinktest.Quirks{TaggingReplacesObject: true})
	for name, env := range map[string]sinktest.S3Env{"double": double.Env, "gofakes3-1.2.0": sinktest.NewFakeS3(t, false)} {
		t.Run(name, func(t *testing.T) {
			w := circlecitest.NewWorld()
			j := w.AddProject(slugArg, "main").AddPipeline("main").AddWorkflow("build").AddJob("build", circlecitest.JobOptions{})
			big := j.AddArtifact(0, "dist/big.bin", 20<<20)
			small := j.AddArtifact(0, "dist/small.txt", 1<<10)
			srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
			d := s3Dest(t, srv, env, "mirror")

			r := runTool(t, d.env, 2*time.Minute, d.pull()...)
			if r.code != 0 && r.code != 1 {
				t.Fatalf("exit %d:\n%s", r.code, r.stderr)
			}
			if r.code == 1 {
				// The artifact may fail once (the object was checked after
				// the tag and found destroyed); the rerun must then mend it.
				t.Logf("first run: %s", lastLine(r.stdout))
			}
			wantCode(t, runTool(t, d.env, 2*time.Minute, d.pull()...), 0)
			if name == "double" {
				checkBucket(t, real, "mirror", mirrorOf(big, small), true)
			}
			wantVerified(t, d, 2)
			before := srv.DownloadTotals().Started
			wantCode(t, runTool(t, d.env, 2*time.Minute, d.pull()...), 0)
			if n := srv.DownloadTotals().Started - before; n != 0 {
				t.Errorf("a rerun after success transferred %d artifacts again", n)
			}
			wantVerified(t, d, 2)
		})
	}
	if double.Played.Load() == 0 {
		t.Error("the double never played the quirk: the test proves nothing")
	}
}

// TestS3KilledUploadOnServerWithoutUploadManagement: a pull to a server
// that can neither list nor abort multipart uploads (s3rver 3.7.1's 405s
// and 501, played in front of the real server) is SIGKILLed in the middle
// of a multipart upload; the rerun, and a rerun with --force, complete the
// artifact instead of failing it on the upload record the kill left.
func TestS3KilledUploadOnServerWithoutUploadManagement(t *testing.T) {
	real := sinktest.NewS3Bucket(t)
	double := sinktest.NewQuirkyS3(t, real, sinktest.Quirks{NoUploadManagement: true})
	w := circlecitest.NewWorld()
	j := w.AddProject(slugArg, "main").AddPipeline("main").AddWorkflow("build").AddJob("build", circlecitest.JobOptions{})
	const size = 64 << 20
	big := j.AddArtifact(0, "dist/big.bin", size)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken, Bandwidth: 16 << 20})
	d := s3Dest(t, srv, double.Env, "mirror")

	for _, extra := range [][]string{nil, {"--force"}} {
		served := srv.Downloads(big).Bytes
		p := startTool(t, d.env, d.pull(extra...)...)
		if !p.waitUntil(func() bool { return srv.Downloads(big).Bytes-served >= size/2 }) {
			t.Fatalf("the run ended before half was served:\n%s", p.stderr.String())
		}
		p.cmd.Process.Signal(syscall.SIGKILL)
		p.wait(30 * time.Second)
		if keys := sinktest.Keys(t, real.NewS3(t, "mirror"), ".artifact-sync/uploads/"); len(keys) == 0 {
			t.Fatalf("the killed run %q left no upload record: nothing to test", extra)
		}
		r := runTool(t, d.env, 2*time.Minute, d.pull(extra...)...)
		wantCode(t, r, 0)
		if strings.Contains(r.stderr, "run the same command again") {
			t.Errorf("the rerun asks for another:\n%s", r.stderr)
		}
		checkBucket(t, real, "mirror", mirrorOf(big), true)
	}
	wantVerified(t, d, 1)
	if double.Played.Load() == 0 {
		t.Error("the double never played the quirk: the test proves nothing")
	}
}
