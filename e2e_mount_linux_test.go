package main

import (
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

// mountWorld is a job whose artifacts, small and one large, all go into
// the folder of its job number, and another job whose one artifact goes
// beside it.
func mountWorld(size int64) (*circlecitest.World, *circlecitest.Artifact, []*circlecitest.Artifact) {
	w := circlecitest.NewWorld()
	wf := w.AddProject(slugArg, "main").AddPipeline("main").AddWorkflow("build")
	j := wf.AddJob("build", circlecitest.JobOptions{})
	big := j.AddArtifact(0, "dist/big.bin", size)
	arts := []*circlecitest.Artifact{big}
	for i := range 20 {
		arts = append(arts, j.AddArtifact(0, fmt.Sprintf("logs/%02d.log", i), 4<<10))
	}
	arts = append(arts, wf.AddJob("report", circlecitest.JobOptions{}).AddArtifact(0, "report.html", 5000))
	return w, big, arts
}

// mountJobFolder mounts a tmpfs on the folder of job's artifacts in the
// destination d (another file system than the destination's own, as a
// disk mounted inside a backup tree is) for the rest of the test. It skips
// the test unless run as root.
func mountJobFolder(t *testing.T, d dest, job int64) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs inside the destination")
	}
	dir := filepath.Join(d.to, strconv.FormatInt(job, 10))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := mountTmpfs(dir, "size=128m"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() {
		if err := unmount(dir); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	})
}

// A folder inside the destination that is another file system takes its
// artifacts in one run: small files and a large one fetched over several
// connections into a partial file, byte-exact, verified, nothing left
// beside them; and a large download into it that is killed resumes from
// what it kept. Each used to fail on the rename into place (EXDEV), be
// retried five times and end telling the user to run the same command
// again, which could never work.
func TestMountInsideTheDestination(t *testing.T) {
	const size = 24 << 20
	pull := func(d dest) []string { return d.pull("-j", "4", "--multi-thread-cutoff", "4M") }

	t.Run("one run", func(t *testing.T) {
		t.Parallel()
		w, big, arts := mountWorld(size)
		srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken, Bandwidth: 8 << 20})
		d := localDest(t, srv)
		mountJobFolder(t, d, big.Job().Number())
		r := runTool(t, d.env, time.Minute, pull(d)...)
		wantCode(t, r, 0)
		d.check(t, mirrorOf(arts...), true)
		if n := srv.Downloads(big).Started; n < 2 {
			t.Errorf("the large file came in %d request(s): the test needs it fetched over several connections", n)
		}
		if served, want := srv.BytesServed(), int64(size+21<<12+5000); served > want+want/20 {
			t.Errorf("served %d bytes for %d: files were fetched again", served, want)
		}
		wantVerified(t, d, len(arts))
		t.Logf("one run: %s", r.elapsed.Round(time.Millisecond))
	})

	t.Run("killed and resumed", func(t *testing.T) {
		t.Parallel()
		w, big, arts := mountWorld(size)
		srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken, Bandwidth: 4 << 20})
		d := localDest(t, srv)
		mountJobFolder(t, d, big.Job().Number())
		p := startTool(t, d.env, pull(d)...)
		// Kill once half the file arrived and a checkpoint described what
		// is kept (the partial lives in DEST/.artifact-sync/partial, on
		// the destination's own file system).
		described := func() bool {
			m, _ := filepath.Glob(filepath.Join(d.to, ".artifact-sync", "partial", "*.json"))
			return len(m) > 0
		}
		if !p.waitUntil(func() bool { return srv.Downloads(big).Bytes >= size/2 && described() }) {
			t.Fatalf("the run ended before the kill:\n%s", p.stderr.String())
		}
		p.cmd.Process.Signal(syscall.SIGKILL)
		p.wait(30 * time.Second)
		d.check(t, mirrorOf(arts...), false)
		first := srv.Downloads(big).Bytes

		r := runTool(t, d.env, time.Minute, pull(d)...)
		wantCode(t, r, 0)
		if strings.Contains(r.stderr, "again") {
			t.Errorf("the rerun tells the user to run it again:\n%s", r.stderr)
		}
		d.check(t, mirrorOf(arts...), true)
		again := srv.Downloads(big).Bytes - first
		if again >= size {
			t.Errorf("the rerun fetched %d bytes of the %d-byte file: it started over instead of resuming", again, size)
		}
		wantVerified(t, d, len(arts))
		t.Logf("killed after %d MiB of the large file; the rerun fetched %d MiB of it", first>>20, again>>20)
	})
}
