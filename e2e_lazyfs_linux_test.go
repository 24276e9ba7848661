//go:build linux

package main

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
	"github.com/artifact-sync/artifact-sync/sink/sinktest/lazyfs"
)

// lazyDisk is a destination on a LazyFS: a FUSE file system that keeps
// apart what has been made durable, and can lose the rest.
type lazyDisk struct {
	backing, dir string
	fs           *lazyfs.FS
}

// needFuse skips t unless it can mount a FUSE file system.
func needFuse(t *testing.T) {
	t.Helper()
	crashNeedRoot(t)
	if !exists("/dev/fuse") {
		crashSkips.Store(t.Name(), true)
		t.Skip("crash-consistency test skipped: no /dev/fuse")
	}
}

func newLazyDisk(t *testing.T) *lazyDisk {
	t.Helper()
	root := t.TempDir()
	ld := &lazyDisk{backing: filepath.Join(root, "backing"), dir: filepath.Join(root, "disk")}
	for _, d := range []string{ld.backing, ld.dir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ld.mount(t)
	t.Cleanup(func() {
		if err := ld.fs.Unmount(); err != nil {
			t.Errorf("unmount %s: %v", ld.dir, err)
		}
	})
	return ld
}

// mount mounts the backing folder afresh: everything in it is durable.
func (ld *lazyDisk) mount(t *testing.T) {
	t.Helper()
	l, err := lazyfs.Mount(ld.backing, ld.dir)
	if err != nil {
		t.Fatal(err)
	}
	ld.fs = l
}

// losePower leaves only what was durable and mounts what is left.
func (ld *lazyDisk) losePower(t *testing.T) {
	t.Helper()
	if err := ld.fs.LosePower(); err != nil {
		t.Fatal(err)
	}
	ld.mount(t)
}

// lazySyncModes are the ways the tool may flush on a LazyFS. Not syncfs,
// its default on Linux: the kernel does not pass syncfs(2) of a FUSE mount
// on to the server (see package lazyfs), so it would flush nothing there.
var lazySyncModes = []string{"fsync", "off"}

// TestLazyFSPowerCut is TestPowerCut on a LazyFS, which forgets everything
// not made durable, so a cut needs no waiting for the kernel's write-back
// to go wrong: a cut at a random instant of a run (by time or by bytes
// served), and one right after a run that succeeded. After each, the
// same invariants: every artifact the manifest records is there byte for
// byte, and the same command run again exits 0 with the tree the
// artifacts and verify passing. Odd seeds flush with fsync
// (ARTIFACT_SYNC_BATCH_SYNC=fsync), even ones file by file (off).
func TestLazyFSPowerCut(t *testing.T) {
	needFuse(t)
	crashSeeds(t, 6, lazyPowerCutTrial)
}

func lazyPowerCutTrial(t *testing.T, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 0x6c617a79))
	cw, tr := crashWorld(seed, r, 1, 20)
	mode := lazySyncModes[seed%2]
	byTime := r.IntN(2) == 0
	after := time.Duration(10+r.IntN(400)) * time.Millisecond
	fraction := 0.05 + 0.9*r.Float64()
	conc := []int{0, 4, 16}[r.IntN(3)]
	cutAt := fmt.Sprintf("at %.0f%% of the bytes", 100*fraction)
	if byTime {
		cutAt = fmt.Sprintf("%s into the run", after)
	}
	t.Logf("seed %d: LazyFS, ARTIFACT_SYNC_BATCH_SYNC=%s; %d small artifacts of %d-%d KiB, %d large up to %d MiB (%d bytes in all); -j %d; cut %s, then right after a run that succeeded",
		seed, mode, tr.small, tr.smallMin>>10, tr.smallMax>>10, tr.large, tr.largeMax>>20, cw.bytes, conc, cutAt)

	ld := newLazyDisk(t)
	srv := circlecitest.Start(t, cw.w, circlecitest.Options{Token: testToken, Latency: tr.latency, Bandwidth: tr.bandwidth})
	want := mirrorOf(cw.good...)
	d := lazyDest(t, srv, ld, mode)
	args := []string{"--json", "--multi-thread-cutoff", "2M"}
	if conc > 0 {
		args = append(args, "-j", strconv.Itoa(conc))
	}

	p := startTool(t, d.env, d.pull(args...)...)
	reached := func() bool { return time.Since(p.start) >= after }
	if !byTime {
		at := max(int64(fraction*float64(cw.bytes)), 1)
		reached = func() bool { return srv.BytesServed() >= at }
	}
	what := "after the power cut at the end of run 1 (it had exited),"
	if p.waitUntil(reached) {
		what = fmt.Sprintf("after the power cut %s into run 1 (%d KiB served),", time.Since(p.start).Round(time.Millisecond), srv.BytesServed()>>10)
	}
	ld.fs.Cut()
	p.cmd.Process.Kill()
	<-p.done
	ld.losePower(t)
	checkRecorded(t, d.to, want, what)
	logTorn(t, d.to, want, what)
	if !crashRerun(t, d, args, want, what) {
		return
	}

	what = "after the power cut right after a run that succeeded,"
	ld.losePower(t)
	checkRecorded(t, d.to, want, what)
	if n, first := wrongFiles(d.to, want, true); n > 0 {
		t.Errorf("%s %d artifacts are not there (e.g. %s), yet the run had exited 0, which says every one is", what, n, first)
	}
	crashRerun(t, d, args, want, what)
}

func lazyDest(t *testing.T, srv *circlecitest.Server, ld *lazyDisk, mode string) dest {
	d := localDest(t, srv)
	d.to = filepath.Join(ld.dir, "mirror")
	d.check = func(t *testing.T, want mirror, complete bool) { t.Helper(); checkDir(t, d.to, want, complete) }
	d.env = append(d.env, "ARTIFACT_SYNC_BATCH_SYNC="+mode)
	return d
}

// TestLazyFSFailingFsync runs the real binary on a LazyFS whose fsyncs
// fail, with EIO, for a random share of the paths below DEST's top folders
// (5-40%, by a hash of the seed and the path), and lose the data of a file whose fsync failed, as
// Linux does after a write-back error (a later fsync of it succeeds). Then
// the power is cut, the disk healed, and checked: every artifact the
// manifest records is there byte for byte (a file whose flush failed must
// never be recorded), and if the run exited 0, every artifact is. The same
// command run again on the healed disk exits 0 with the tree the artifacts
// and verify passing.
func TestLazyFSFailingFsync(t *testing.T) {
	needFuse(t)
	crashSeeds(t, 4, lazyFailingTrial)
}

func lazyFailingTrial(t *testing.T, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 0x6569))
	cw, tr := crashWorld(seed, r, 1, 20)
	mode := lazySyncModes[seed%2]
	pct := uint64(5 + r.IntN(36))
	conc := []int{0, 4, 16}[r.IntN(3)]
	t.Logf("seed %d: LazyFS, ARTIFACT_SYNC_BATCH_SYNC=%s; %d small artifacts of %d-%d KiB, %d large up to %d MiB (%d bytes in all); -j %d; %d%% of the paths fail their fsyncs",
		seed, mode, tr.small, tr.smallMin>>10, tr.smallMax>>10, tr.large, tr.largeMax>>20, cw.bytes, conc, pct)

	ld := newLazyDisk(t)
	ld.fs.FailSyncs(func(path string) bool {
		// The disk fails below the destination's top folders: the run
		// gets going (its lock, DEST itself) before it sees an error.
		if strings.Count(path, "/") < 2 {
			return false
		}
		h := fnv.New64a()
		fmt.Fprintf(h, "%d\x00%s", seed, path)
		return h.Sum64()%100 < pct
	})
	srv := circlecitest.Start(t, cw.w, circlecitest.Options{Token: testToken, Latency: tr.latency, Bandwidth: tr.bandwidth})
	want := mirrorOf(cw.good...)
	d := lazyDest(t, srv, ld, mode)
	// Two attempts, not five: a path whose fsyncs fail fails every one,
	// and each attempt waits out a backoff.
	args := []string{"--json", "--multi-thread-cutoff", "2M", "--retries", "2"}
	if conc > 0 {
		args = append(args, "-j", strconv.Itoa(conc))
	}

	res := runTool(t, d.env, 3*time.Minute, d.pull(args...)...)
	sum, err := parseChaosSummary(res.stdout)
	st := ld.fs.Stats()
	t.Logf("run 1 on the failing disk: exit %d in %s; %s; %d fsyncs failed, %d succeeded on dropped data; stderr: %s",
		res.code, res.elapsed.Round(time.Millisecond), briefSummary(sum, err), st.Failed, st.Dropped, lastLine(res.stderr))
	if st.Failed == 0 {
		t.Logf("no fsync failed: this trial tests nothing of a failing disk")
	}

	what := fmt.Sprintf("after run 1 on the failing disk (exit %d), a power cut and the disk healed,", res.code)
	ld.losePower(t)
	checkRecorded(t, d.to, want, what)
	if n, first := wrongFiles(d.to, want, true); res.code == 0 && n > 0 {
		t.Errorf("%s %d artifacts are not there (e.g. %s), yet run 1 exited 0, which says every one is", what, n, first)
	} else {
		logTorn(t, d.to, want, what)
	}
	crashRerun(t, d, args, want, what)
}
