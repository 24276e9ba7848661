package main

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
	"github.com/artifact-sync/artifact-sync/sink/sinktest"
)

// TestS3UploadResumesAfterInterrupt stops a pull of a 256 MiB artifact to
// S3 a third of the way through, with SIGINT and with SIGKILL, and runs it
// again: the rerun continues the multipart upload from the parts S3 kept
// (fetching the source from there with Range), so the artifact is served at
// most 1.4 times over both runs; the object is byte-exact, verify passes
// on its SHA-256, and no multipart upload or upload state is left behind.
func TestS3UploadResumesAfterInterrupt(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			env := sinktest.NewS3Bucket(t)
			w := circlecitest.NewWorld()
			j := w.AddProject(slugArg, "main").AddPipeline("main").AddWorkflow("build").AddJob("build", circlecitest.JobOptions{})
			const size = 256 << 20
			big := j.AddArtifact(0, "dist/big.bin", size)
			srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken, Bandwidth: 48 << 20})
			d := s3Dest(t, srv, env, "mirror")

			p := startTool(t, d.env, d.pull()...)
			if !p.waitUntil(func() bool { return srv.Downloads(big).Bytes >= size/3 }) {
				t.Fatalf("the run ended before a third was served:\n%s", p.stderr.String())
			}
			p.cmd.Process.Signal(sig)
			r := p.wait(30 * time.Second)
			if sig == syscall.SIGINT {
				wantCode(t, r, 130)
			}
			first := srv.Downloads(big).Bytes
			d.check(t, mirrorOf(big), false)

			r = runTool(t, d.env, 2*time.Minute, d.pull()...)
			wantCode(t, r, 0)
			d.check(t, mirrorOf(big), true)
			total := srv.Downloads(big).Bytes
			t.Logf("%s: first run was served %d MiB, the rerun %d MiB: %.2fx the artifact", sig, first>>20, (total-first)>>20, float64(total)/size)
			if total-first >= size {
				t.Errorf("the rerun was served %d bytes of the %d-byte artifact: it started over instead of resuming", total-first, size)
			}
			if float64(total) > 1.4*size {
				t.Errorf("served %d bytes over both runs for a %d-byte artifact: %.2fx, want at most 1.4x", total, size, float64(total)/size)
			}
			if ups := env.OpenUploads(t); len(ups) != 0 {
				t.Errorf("multipart uploads left open: %q", ups)
			}
			s := env.NewS3(t, "mirror")
			for _, k := range sinktest.Keys(t, s, ".artifact-sync/") {
				if strings.HasPrefix(k, ".artifact-sync/uploads/") {
					t.Errorf("upload state left behind: %s", k)
				}
			}
			wantVerified(t, d, 1)
		})
	}
}
