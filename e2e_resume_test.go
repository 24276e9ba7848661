package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
)

// largeSize is the size of the large artifacts of the resume tests:
// $ARTIFACT_SYNC_TEST_LARGE_MIB MiB (e.g. 256, the size the README quotes),
// 96 MiB by default to keep CI quick.
func largeSize(t *testing.T) int64 {
	if v := os.Getenv("ARTIFACT_SYNC_TEST_LARGE_MIB"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 16 {
			t.Fatalf("ARTIFACT_SYNC_TEST_LARGE_MIB=%q: want a whole number of MiB, at least 16", v)
		}
		return int64(n) << 20
	}
	return 96 << 20
}

// checkpointStep is the sink's checkpoint step. A kill loses of a large
// download what arrived since its last checkpoint: one step, plus what the
// streams wrote while that checkpoint's fsync ran, which on a loaded
// machine can be another step; the bound allows two per file.
const checkpointStep = 16 << 20

// TestLargeDownloadsResumeAfterInterruptOrKill interrupts pulls of large
// artifacts fetched over several ranged connections, with SIGINT after a
// third of one artifact and with SIGKILL after 59% of two, and reruns them:
// the rerun fetches only what the first run had not written (SIGINT: every
// written range is kept; SIGKILL: all but what arrived since the file's last
// checkpoint), and the copy is byte-identical.
func TestLargeDownloadsResumeAfterInterruptOrKill(t *testing.T) {
	size := largeSize(t)
	for _, tc := range []struct {
		sig   syscall.Signal
		files int
		at    float64 // of all the bytes
		bound int64   // bytes served over both runs, at most
	}{
		{syscall.SIGINT, 1, 1.0 / 3, size * 105 / 100},
		{syscall.SIGKILL, 2, 0.59, 2*size + 2*2*checkpointStep + 8<<20},
	} {
		t.Run(tc.sig.String(), func(t *testing.T) {
			w := circlecitest.NewWorld()
			j := w.AddProject(slugArg, "main").AddPipeline("main").AddWorkflow("build").AddJob("build", circlecitest.JobOptions{})
			var arts []*circlecitest.Artifact
			for i := range tc.files {
				arts = append(arts, j.AddArtifact(0, fmt.Sprintf("dist/large-%d.bin", i), size))
			}
			total := size * int64(tc.files)
			srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken, Bandwidth: 6 << 20})
			d := localDest(t, srv)
			args := d.pull("--multi-thread-cutoff", "16M")

			p := startTool(t, d.env, args...)
			if !p.waitUntil(func() bool { return srv.BytesServed() >= int64(float64(total)*tc.at) }) {
				t.Fatalf("the run ended before the signal:\n%s", p.stderr.String())
			}
			p.cmd.Process.Signal(tc.sig)
			r := p.wait(30 * time.Second)
			if tc.sig != syscall.SIGKILL {
				wantCode(t, r, 130)
			}
			first := srv.BytesServed()
			t.Logf("%s at %d MiB served: %d MiB kept", tc.sig, first>>20, keptBytesIn(d.to)>>20)
			if srv.Connections(circlecitest.HostArtifacts) < 3 {
				t.Fatalf("%d connection(s): the test needs multi-stream downloads", srv.Connections(circlecitest.HostArtifacts))
			}
			d.check(t, mirrorOf(arts...), false)

			r = runTool(t, d.env, 2*time.Minute, args...)
			wantCode(t, r, 0)
			d.check(t, mirrorOf(arts...), true)
			served := srv.BytesServed()
			t.Logf("%s at %d MiB of %d MiB: both runs served %d MiB = %.3fx (bound %.3fx)", tc.sig, first>>20, total>>20, served>>20,
				float64(served)/float64(total), float64(tc.bound)/float64(total))
			if served > tc.bound {
				t.Errorf("served %d bytes over both runs for %d bytes of artifacts (%.2fx): the rerun fetched again what the first run had written",
					served, total, float64(served)/float64(total))
			}
			wantVerified(t, d, len(arts))
		})
	}
}

// TestOneFailureNeverSinksTheRun: a storage 403 on one object and a job
// whose artifact listing fails are failures of their own, listed in the
// --json summary; everything else is transferred, the run exits 1, and the
// rerun (once the faults pass) completes.
func TestOneFailureNeverSinksTheRun(t *testing.T) {
	w := circlecitest.NewWorld()
	wf := w.AddProject(slugArg, "main").AddPipeline("main").AddWorkflow("build")
	good := wf.AddJob("build", circlecitest.JobOptions{})
	var arts []*circlecitest.Artifact
	for i := range 20 {
		arts = append(arts, good.AddArtifact(0, fmt.Sprintf("out/%02d.txt", i), 1000+int64(i)))
	}
	refused := arts[7]
	lister := wf.AddJob("lint", circlecitest.JobOptions{})
	arts = append(arts, lister.AddArtifact(0, "lint.txt", 10))
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken, Redirect: true})
	srv.SetFaults(func(c circlecitest.Call) circlecitest.Fault {
		switch {
		case c.Host == circlecitest.HostStorage && c.Artifact == refused:
			return circlecitest.StatusFault(403, "")
		case c.Route == "artifacts" && strings.Contains(c.Key, "/"+strconv.FormatInt(lister.Number(), 10)+"/artifacts"):
			return circlecitest.StatusFault(500, "")
		}
		return circlecitest.Fault{}
	})
	d := localDest(t, srv)
	r := runTool(t, d.env, 2*time.Minute, d.pull("--json", "--retries", "2")...)
	wantCode(t, r, 1)
	var sum struct {
		Artifacts, Transferred, Failed int
		Failures                       []struct {
			JobNumber int64  `json:"job_number"`
			JobName   string `json:"job_name"`
			Path      string
			Error     string
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil {
		t.Fatalf("--json summary: %v\n%s", err, r.stdout)
	}
	if sum.Transferred != 19 || sum.Failed != 2 || len(sum.Failures) != 2 {
		t.Fatalf("summary %+v: want 19 transferred, the refused object and the failed job listed", sum)
	}
	for _, f := range sum.Failures {
		switch {
		case f.Path == refused.Path():
			if !strings.Contains(f.Error, "403") || strings.Contains(strings.ToLower(f.Error), "token") {
				t.Errorf("refused object: %q; want the 403 and no token hint (no token went to storage)", f.Error)
			}
		case f.Path == "" && f.JobNumber == lister.Number() && f.JobName == "lint":
			if !strings.Contains(f.Error, "500") {
				t.Errorf("failed job: %q; want the 500", f.Error)
			}
		default:
			t.Errorf("unexpected failure %+v", f)
		}
	}
	srv.SetFaults(nil)
	r = runTool(t, d.env, time.Minute, d.pull()...)
	wantCode(t, r, 0)
	d.check(t, mirrorOf(arts...), true)
}

// TestLayoutLeavingDestIsRefusedUpFront: a layout whose fixed part leaves
// DEST or reaches .artifact-sync/ is a usage error before any request.
func TestLayoutLeavingDestIsRefusedUpFront(t *testing.T) {
	w, _ := smallWorld(3, 10)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
	for _, layout := range []string{"/{job_number}/{node_index}/{path}", "../{path}", "{job_number}/../../{path}", ".artifact-sync/{path}"} {
		d := localDest(t, srv)
		srv.ResetStats()
		r := runTool(t, d.env, 30*time.Second, d.pull("--layout", layout)...)
		wantCode(t, r, 2)
		wantOneLine(t, r, "--layout")
		if n := len(srv.RequestLog()); n != 0 {
			t.Errorf("--layout %q: %d requests before the refusal", layout, n)
		}
	}
}

// keptBytesIn counts the bytes the partial descriptions under a local
// destination say are kept.
func keptBytesIn(dir string) (n int64) {
	metas, _ := filepath.Glob(filepath.Join(dir, ".artifact-sync", "partial", "*.json"))
	for _, m := range metas {
		b, _ := os.ReadFile(m)
		var meta struct{ Spans []struct{ From, To int64 } }
		_ = json.Unmarshal(b, &meta)
		for _, s := range meta.Spans {
			n += s.To - s.From
		}
	}
	return n
}
