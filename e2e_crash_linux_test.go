//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	stdsync "sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
	"github.com/artifact-sync/artifact-sync/manifest"
)

// Environment of the crash-consistency tests (TestPowerCut, TestFailingDisk
// and the LazyFS ones).
const (
	// crashSeedEnv sets the seed of the first trial; the others take the
	// seeds after it. Default: a seed from the clock, logged.
	crashSeedEnv = "ARTIFACT_SYNC_CRASH_SEED"
	// crashTrialsEnv sets the number of trials of each crash test.
	crashTrialsEnv = "ARTIFACT_SYNC_CRASH_TRIALS"
)

// crashSkips counts the crash tests skipped for want of root or loop
// devices; crashSkipNote says it once at the end, as sinktest says the S3
// skips, since a skip alone is silent in "go test ./...".
var crashSkips stdsync.Map

func crashSkipNote() {
	n := 0
	crashSkips.Range(func(any, any) bool { n++; return true })
	if n == 0 {
		return
	}
	msg := fmt.Sprintf("%d crash-consistency tests skipped: they need root, loop devices and /dev/fuse; sudo bash .ci/run runs them (see README, Development)", n)
	if tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0); err == nil {
		fmt.Fprintln(tty, msg)
		tty.Close()
	} else {
		fmt.Fprintln(os.Stderr, msg)
	}
}

// crashNeedRoot skips t unless it can make loop devices and mount them.
func crashNeedRoot(t *testing.T, tools ...string) {
	t.Helper()
	why := ""
	switch {
	case os.Geteuid() != 0:
		why = "not root"
	case !exists("/dev/loop-control"):
		why = "no /dev/loop-control"
	}
	for _, tool := range append([]string{"losetup"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil && why == "" {
			why = tool + " is not installed"
		}
	}
	if why != "" {
		name, _, _ := strings.Cut(t.Name(), "/")
		crashSkips.Store(name, true)
		t.Skipf("crash-consistency test skipped: %s", why)
	}
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// crashSeeds runs trial once per seed, as TestChaos does: the seed of the
// first from $ARTIFACT_SYNC_CRASH_SEED or the clock, their number from
// $ARTIFACT_SYNC_CRASH_TRIALS or def. A failing trial logs the line that
// replays it.
func crashSeeds(t *testing.T, def int, trial func(t *testing.T, seed uint64)) {
	trials := def
	if s := os.Getenv(crashTrialsEnv); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("$%s=%q: give a number of trials", crashTrialsEnv, s)
		}
		trials = n
	}
	first := uint64(time.Now().UnixNano() % 1e6)
	if s := os.Getenv(crashSeedEnv); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("$%s=%q: give a number", crashSeedEnv, s)
		}
		first = n
	}
	t.Logf("seeds %d to %d (%s=%d %s=%d)", first, first+uint64(trials)-1, crashSeedEnv, first, crashTrialsEnv, trials)
	name := t.Name()
	for i := range uint64(trials) {
		seed := first + i
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			defer func() {
				if t.Failed() {
					t.Logf("replay: sudo %s=%d %s=1 go test -count=1 -run '^%s$/^seed=%d$' .", crashSeedEnv, seed, crashTrialsEnv, name, seed)
				}
			}()
			trial(t, seed)
		})
	}
}

// crashWorld is a small world for a crash trial: small to small+60 small
// artifacts of 4-192 KiB times scale, sometimes one or two over the multi-stream cutoff, from the
// generator TestChaos uses, without its faults.
func crashWorld(seed uint64, r *rand.Rand, scale int64, small int) (*chaosWorld, *chaosTrial) {
	tr := newChaosTrial(seed)
	tr.r = r
	tr.small = small + r.IntN(60)
	tr.smallMin, tr.smallMax = scale*(4<<10), scale*(192<<10)
	tr.large = []int{0, 0, 1, 2}[r.IntN(4)]
	tr.cutoff = 2 << 20
	tr.largeMax = int64(2+r.IntN(3)) << 20
	tr.listFail, tr.deny = false, false
	tr.faultPct, tr.cutEvery = 0, 0
	tr.latency = time.Duration([]int{0, 0, 2, 5}[r.IntN(4)]) * time.Millisecond
	tr.bandwidth = int64([]int{4, 8, 16}[r.IntN(3)]) << 20
	return tr.world(), tr
}

// loopMount is a file system image attached to a loop device and mounted.
type loopMount struct {
	dev, dir string
	mounted  bool
}

// command runs name with args and fails t with its output if it fails.
func command(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// attach attaches img to a free loop device and mounts it on dir; both are
// undone when t ends, whatever happened.
func attach(t *testing.T, img, fstype, dir, opts string) *loopMount {
	t.Helper()
	m := &loopMount{dir: dir}
	m.dev = command(t, "losetup", "--find", "--show", img)
	t.Cleanup(func() {
		m.unmount(t)
		if out, err := exec.Command("losetup", "-d", m.dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v\n%s", m.dev, err, out)
		}
	})
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount(m.dev, dir, fstype, 0, opts); err != nil {
		t.Fatalf("mount %s (%s, %s) on %s: %v", m.dev, fstype, img, dir, err)
	}
	m.mounted = true
	return m
}

// unmount unmounts m, waiting for a killed tool's files to close.
func (m *loopMount) unmount(t *testing.T) {
	if !m.mounted {
		return
	}
	var err error
	for range 50 {
		if err = syscall.Unmount(m.dir, 0); err != syscall.EBUSY {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Errorf("unmount %s: %v", m.dir, err)
		syscall.Unmount(m.dir, syscall.MNT_DETACH)
	}
	m.mounted = false
}

// crashHost is a file system that clones files (XFS with reflink, itself on
// a loop device), so that the image of a mounted file system can be copied
// at an instant: FICLONE takes the backing file's lock, so the copy holds
// exactly what the loop device had been sent when it ran, and nothing of
// the page cache of the file system inside it.
type crashHost struct{ dir string }

func newCrashHost(t *testing.T) *crashHost {
	t.Helper()
	crashNeedRoot(t, "mkfs.xfs", "mkfs.ext4", "mkfs.btrfs")
	dir := t.TempDir()
	img := filepath.Join(dir, "host.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 8<<30); err != nil {
		t.Fatal(err)
	}
	command(t, "mkfs.xfs", "-q", "-m", "reflink=1", img)
	attach(t, img, "xfs", filepath.Join(dir, "host"), "")
	return &crashHost{dir: filepath.Join(dir, "host")}
}

// crashFS is a file system a trial may put the destination on.
type crashFS struct {
	name string
	size int64
	mkfs []string
	// opts mounts a copy of an image (XFS refuses a second file system
	// with the same UUID, even one unmounted a moment ago, without nouuid).
	opts string
}

var crashFSes = []crashFS{
	{"ext4", 128 << 20, []string{"mkfs.ext4", "-q"}, ""},
	{"xfs", 320 << 20, []string{"mkfs.xfs", "-q"}, "nouuid"},
	{"btrfs", 256 << 20, []string{"mkfs.btrfs", "-q"}, ""},
}

// newImage makes a sparse image of fs in the host.
func (h *crashHost) newImage(t *testing.T, fs crashFS, name string) string {
	t.Helper()
	img := filepath.Join(h.dir, name)
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, fs.size); err != nil {
		t.Fatal(err)
	}
	command(t, fs.mkfs[0], append(fs.mkfs[1:], img)...)
	t.Cleanup(func() { os.Remove(img) })
	return img
}

// cut copies the image as it stands: the disk after a power cut now.
func (h *crashHost) cut(t *testing.T, img, name string) string {
	t.Helper()
	dst := filepath.Join(h.dir, name)
	src, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.IoctlFileClone(int(f.Fd()), int(src.Fd())); err != nil {
		t.Fatalf("FICLONE %s: %v", img, err)
	}
	t.Cleanup(func() { os.Remove(dst) })
	return dst
}

// loadRecorded loads the manifest in DEST/.artifact-sync as the tool would,
// from a copy (loading must not change the disk under test), and returns
// its entries.
func loadRecorded(t *testing.T, to string) ([]manifest.Entry, error) {
	t.Helper()
	src := filepath.Join(to, ".artifact-sync", "manifest")
	names, err := os.ReadDir(src)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	tmp := t.TempDir()
	for _, n := range names {
		if !n.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, n.Name()))
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(tmp, n.Name()), b, 0o600); err != nil {
			return nil, err
		}
	}
	ctx := context.Background()
	m, err := manifest.Open(ctx, manifest.DirStore{Dir: tmp}, manifest.Options{Destination: to})
	if err != nil {
		return nil, err
	}
	defer m.Close(ctx)
	var es []manifest.Entry
	for e := range m.Entries() {
		es = append(es, e)
	}
	return es, nil
}

// checkRecorded is the check that catches a record without durable data:
// every artifact the manifest on the disk records must be there, byte for
// byte. what says which disk ("after the power cut 3.2 s into run 1").
// It returns how many entries it checked, or -1 if the manifest did not
// load.
func checkRecorded(t *testing.T, to string, want mirror, what string) int {
	t.Helper()
	return checkRecordedBut(t, to, want, what, false)
}

// checkRecordedBut is checkRecorded, but with overwritten set it only logs
// a recorded file that has its full length and not one block of zeros,
// yet other bytes: what ext2 does to a file flushed and recorded before
// its disk failed, when a block-bitmap write fails and the stale bitmap is
// read again, so the file's blocks go to a file written later (no
// application can prevent that; the next run re-hashes everything
// recorded after a disk error, and crashRerun checks that it repairs it).
// A lost flush leaves zeros or a short or missing file, never that.
func checkRecordedBut(t *testing.T, to string, want mirror, what string, overwritten bool) int {
	t.Helper()
	es, err := loadRecorded(t, to)
	if err != nil {
		t.Errorf("%s the manifest does not load: %v", what, err)
		return -1
	}
	bad := 0
	for _, e := range es {
		w, ok := want[e.Key]
		if !ok {
			t.Errorf("%s the manifest records %s, which is no artifact of this world", what, e.Key)
			continue
		}
		f, err := os.Open(filepath.Join(to, filepath.FromSlash(e.Key)))
		if err != nil {
			bad++
			if bad <= 5 {
				t.Errorf("%s the manifest records %s (%d bytes) but it is not there: %v", what, e.Key, e.Size, err)
			}
			continue
		}
		sum, n, err := sha256Hex(f)
		zeros := n > 0 && allZeros(f)
		zeroBlock := hasZeroBlock(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if overwritten && sum != w.sha && e.SHA256 == w.sha && n == e.Size && !zeroBlock {
			t.Logf("%s the manifest records %s, overwritten after it was flushed by a file written later (its file system lost a metadata write): left to the rerun", what, e.Key)
			continue
		}
		if sum != w.sha || e.SHA256 != w.sha {
			bad++
			if bad <= 5 {
				desc := fmt.Sprintf("%d bytes", n)
				if zeros {
					desc += ", all zeros"
				}
				t.Errorf("%s the manifest records %s (%d bytes) but it holds something else: %s, SHA-256 %.12s…, want %.12s…", what, e.Key, e.Size, desc, sum, w.sha)
			}
		}
	}
	if bad > 5 {
		t.Errorf("%s %d of the %d recorded artifacts are not what was recorded", what, bad, len(es))
	}
	return len(es)
}

// logTorn logs how many files at their final keys are there but not the
// artifact after a cut. That is allowed where the manifest does not record
// them (a batch is renamed into place before the one flush that makes it
// durable): the rerun fetches them again, and crashRerun checks that it
// does.
func logTorn(t *testing.T, to string, want mirror, what string) {
	t.Helper()
	if n, first := wrongFiles(to, want, false); n > 0 {
		t.Logf("%s %d files at their final keys are not the artifact (e.g. %s), unrecorded", what, n, first)
	}
}

// wrongFiles counts the artifacts that are not at their final keys byte
// for byte (the absent ones too if absent), and describes the first.
func wrongFiles(to string, want mirror, absent bool) (n int, first string) {
	for _, k := range slices.Sorted(maps.Keys(want)) {
		w := want[k]
		f, err := os.Open(filepath.Join(to, filepath.FromSlash(k)))
		if err != nil {
			if !absent {
				continue
			}
			if n++; first == "" {
				first = k + ": absent"
			}
			continue
		}
		sum, size, _ := sha256Hex(f)
		f.Close()
		if sum != w.sha {
			if n++; first == "" {
				first = fmt.Sprintf("%s: %d bytes of %d, not the artifact", k, size, w.size)
			}
		}
	}
	return n, first
}

// allZeros reports whether f holds nothing but zero bytes.
func allZeros(f *os.File) bool {
	buf := make([]byte, 64<<10)
	r := io.NewSectionReader(f, 0, 1<<62)
	for {
		n, err := r.Read(buf)
		for _, b := range buf[:n] {
			if b != 0 {
				return false
			}
		}
		if err != nil {
			return true
		}
	}
}

// crashRerun runs the same command again on the disk after a cut, or after
// a failed disk was healed, and checks the invariants: exit 0, the tree
// byte-identical to the artifacts, verify passes.
func crashRerun(t *testing.T, d dest, args []string, want mirror, what string) bool {
	t.Helper()
	r := runTool(t, d.env, 3*time.Minute, d.pull(args...)...)
	sum, err := parseChaosSummary(r.stdout)
	t.Logf("rerun %s: exit %d in %s; %s", what, r.code, r.elapsed.Round(time.Millisecond), briefSummary(sum, err))
	if r.code != 0 {
		t.Errorf("rerun %s: exit %d, want 0\nstderr:\n%s", what, r.code, tail(r.stderr))
		return false
	}
	d.check(t, want, true)
	if n := verifiedCount(t, d); n >= 0 && n != len(want) {
		t.Errorf("verify %s checked %d artifacts, want %d", what, n, len(want))
	}
	return !t.Failed()
}

// TestPowerCut cuts the power under the real binary pulling to a real file
// system (ext4, XFS or btrfs, by seed) on a loop device, twice a trial:
//
//  1. during a run, at a random instant (by time, or by bytes served);
//  2. on a new disk, after a run that succeeded, at three random instants,
//     one in each of 0-2.5 s, 2.5-6 s and 6-10 s (ext4 commits its journal
//     every 5 s and writes delayed data back after 30 s: a cut between the
//     two finds what was renamed but never synced).
//
// The disk after a cut is what the loop device had been sent at that
// instant (crashHost.cut); the file system's page cache is lost, as in a
// power cut. The copy is mounted afresh and checked: every artifact the
// manifest records is there, byte for byte (a record without durable data
// fails here); then the same command is run again on it: it exits 0, the
// tree is the artifacts, verify passes. A failure names the seed and the
// line that replays it; ARTIFACT_SYNC_CRASH_TRIALS=100 runs more.
func TestPowerCut(t *testing.T) {
	h := newCrashHost(t)
	crashSeeds(t, 6, func(t *testing.T, seed uint64) { powerCutTrial(t, h, seed) })
}

func powerCutTrial(t *testing.T, h *crashHost, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 0x706f776572))
	fs := crashFSes[seed%uint64(len(crashFSes))]
	cw, tr := crashWorld(seed, r, 1, 20)
	byTime := r.IntN(2) == 0
	after := time.Duration(10+r.IntN(300)) * time.Millisecond
	fraction := 0.05 + 0.9*r.Float64()
	// One instant in each of the quiet windows: before ext4's first
	// journal commit, around it, and after it.
	var quiet []time.Duration
	for _, w := range [][2]int{{0, 2500}, {2500, 6000}, {6000, 10_000}} {
		quiet = append(quiet, time.Duration(w[0]+r.IntN(w[1]-w[0]))*time.Millisecond)
	}
	conc := []int{0, 4, 16}[r.IntN(3)]
	cutAt := fmt.Sprintf("at %.0f%% of the bytes", 100*fraction)
	if byTime {
		cutAt = fmt.Sprintf("%s into the run", after)
	}
	t.Logf("seed %d: %s; %d small artifacts of %d-%d KiB, %d large up to %d MiB (%d bytes in all); -j %d; cut %s, then %v after a run that succeeded",
		seed, fs.name, tr.small, tr.smallMin>>10, tr.smallMax>>10, tr.large, tr.largeMax>>20, cw.bytes, conc, cutAt, quiet)

	srv := circlecitest.Start(t, cw.w, circlecitest.Options{Token: testToken, Latency: tr.latency, Bandwidth: tr.bandwidth})
	want := mirrorOf(cw.good...)
	img := h.newImage(t, fs, fmt.Sprintf("%d.img", seed))
	fresh := h.cut(t, img, fmt.Sprintf("%d.fresh.img", seed))
	mnt := filepath.Join(t.TempDir(), "disk")
	m := attach(t, img, fs.name, mnt, "")
	d := localDest(t, srv)
	d.to = filepath.Join(mnt, "mirror")
	d.check = func(t *testing.T, want mirror, complete bool) { t.Helper(); checkDir(t, d.to, want, complete) }
	args := []string{"--json", "--multi-thread-cutoff", "2M"}
	if conc > 0 {
		args = append(args, "-j", strconv.Itoa(conc))
	}

	// 1. A cut during a run.
	p := startTool(t, d.env, d.pull(args...)...)
	reached := func() bool { return time.Since(p.start) >= after }
	if !byTime {
		at := max(int64(fraction*float64(cw.bytes)), 1)
		reached = func() bool { return srv.BytesServed() >= at }
	}
	what := "after the power cut during run 1"
	if p.waitUntil(reached) {
		what = fmt.Sprintf("after the power cut %s into run 1 (%d KiB served),", time.Since(p.start).Round(time.Millisecond), srv.BytesServed()>>10)
	} else {
		what = "after the power cut at the end of run 1 (it had exited),"
	}
	disk := h.cut(t, img, fmt.Sprintf("%d.cut1.img", seed))
	p.cmd.Process.Kill()
	<-p.done
	m.unmount(t)
	t.Logf("%s", what)
	m = attach(t, disk, fs.name, mnt, fs.opts)
	checkRecorded(t, d.to, want, what)
	logTorn(t, d.to, want, what)
	crashRerun(t, d, args, want, what)
	m.unmount(t)

	// 2. Cuts some seconds after a run that succeeded, on a new disk.
	m = attach(t, fresh, fs.name, mnt, fs.opts)
	res := runTool(t, d.env, 3*time.Minute, d.pull(args...)...)
	if res.code != 0 {
		t.Fatalf("a run on a new disk: exit %d, want 0\nstderr:\n%s", res.code, tail(res.stderr))
	}
	end := time.Now()
	var disks []string
	for i, q := range quiet {
		time.Sleep(time.Until(end.Add(q)))
		disks = append(disks, h.cut(t, fresh, fmt.Sprintf("%d.quiet%d.img", seed, i)))
	}
	m.unmount(t)
	for i, q := range quiet {
		what = fmt.Sprintf("after the power cut %s after a run that succeeded,", q)
		m = attach(t, disks[i], fs.name, mnt, fs.opts)
		if n := checkRecorded(t, d.to, want, what); n >= 0 && n != len(want) {
			t.Logf("%s the manifest records %d of the %d artifacts", what, n, len(want))
		}
		logTorn(t, d.to, want, what)
		crashRerun(t, d, args, want, what)
		m.unmount(t)
	}
}

// TestFailingDisk runs the real binary on a disk whose writes start to fail
// part way through: ext2 or ext4 on a loop device over a sparse image on a
// tmpfs too small to hold what the run writes, so that once the tmpfs is
// full every write-back of a new block fails with EIO while the file
// system inside still reports free space. The journal and inode tables are
// written up front, but ext4 still turns read-only when a metadata write
// fails; ext2 goes on. Every four seeds cover ext2 and ext4, each with the
// tool's default flush (syncfs(2)) and with ARTIFACT_SYNC_BATCH_SYNC=fsync.
//
// After the run the disk is healed (the tmpfs grown), what the page cache
// still holds written, the image mounted afresh and checked: every
// artifact the manifest records is there, byte for byte (the kernel may
// have dropped the pages whose write-back failed, so a record made after a
// failed flush, or after a later flush that no longer reports that error,
// names zeros or nothing); if the run exited 0, every artifact is there.
// Then the same command runs again on the healed disk: exit 0, the tree is
// the artifacts, verify passes.
func TestFailingDisk(t *testing.T) {
	crashNeedRoot(t, "mkfs.ext2", "mkfs.ext4")
	crashSeeds(t, 8, failingDiskTrial)
}

func failingDiskTrial(t *testing.T, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 0x6469736b))
	// Enough files for several flushes after the disk starts failing.
	cw, tr := crashWorld(seed, r, 2, 60)
	// Every four seeds cover ext2 and ext4, each with syncfs (the
	// default) and with fsync.
	fsName := []string{"ext2", "ext4"}[seed%2]
	mode := []string{"", "fsync"}[seed/2%2]
	room := int64(float64(cw.bytes)*(0.1+0.4*r.Float64())) &^ 4095
	conc := []int{0, 4, 16}[r.IntN(3)]
	t.Logf("seed %d: %s; %d small artifacts of %d-%d KiB, %d large up to %d MiB (%d bytes in all); the disk fails after %d KiB more; -j %d; ARTIFACT_SYNC_BATCH_SYNC=%q",
		seed, fsName, tr.small, tr.smallMin>>10, tr.smallMax>>10, tr.large, tr.largeMax>>20, cw.bytes, room>>10, conc, mode)

	tmpfs := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(tmpfs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := mountTmpfs(tmpfs, "size=256m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unmount(tmpfs); err != nil {
			t.Errorf("unmount %s: %v", tmpfs, err)
		}
	})
	img := filepath.Join(tmpfs, "disk.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 128<<20); err != nil {
		t.Fatal(err)
	}
	// The journal and the inode tables are written now, so the disk's
	// failures hit the data, not the journal (which makes ext4 read-only).
	command(t, "mkfs."+fsName, "-q", "-E", "lazy_itable_init=0,lazy_journal_init=0", img)
	mnt := filepath.Join(t.TempDir(), "disk")
	m := attach(t, img, fsName, mnt, "")
	var st unix.Statfs_t
	if err := unix.Statfs(tmpfs, &st); err != nil {
		t.Fatal(err)
	}
	used := int64(st.Blocks-st.Bfree) * st.Bsize
	if err := remount(tmpfs, fmt.Sprintf("size=%dk", (used+room)>>10)); err != nil {
		t.Fatal(err)
	}

	srv := circlecitest.Start(t, cw.w, circlecitest.Options{Token: testToken, Latency: tr.latency, Bandwidth: tr.bandwidth})
	want := mirrorOf(cw.good...)
	d := localDest(t, srv)
	d.to = filepath.Join(mnt, "mirror")
	d.check = func(t *testing.T, want mirror, complete bool) { t.Helper(); checkDir(t, d.to, want, complete) }
	if mode != "" {
		d.env = append(d.env, "ARTIFACT_SYNC_BATCH_SYNC="+mode)
	}
	args := []string{"--json", "--multi-thread-cutoff", "2M"}
	if conc > 0 {
		args = append(args, "-j", strconv.Itoa(conc))
	}

	res := runTool(t, d.env, 3*time.Minute, d.pull(args...)...)
	sum, err := parseChaosSummary(res.stdout)
	t.Logf("run 1 on the failing disk: exit %d in %s; %s; stderr: %s", res.code, res.elapsed.Round(time.Millisecond), briefSummary(sum, err), lastLine(res.stderr))

	// Heal the disk, let the file system write what it still holds, and
	// mount the image afresh: only what reached the disk is read back.
	if err := remount(tmpfs, "size=256m"); err != nil {
		t.Fatal(err)
	}
	if f, err := os.Open(mnt); err == nil {
		unix.Syncfs(int(f.Fd()))
		f.Close()
	}
	m.unmount(t)
	// What a reboot would do before mounting it again.
	exec.Command("e2fsck", "-fy", img).Run()
	attach(t, img, fsName, mnt, "")
	what := fmt.Sprintf("after run 1 on the failing disk (exit %d) and the disk healed,", res.code)
	checkRecordedBut(t, d.to, want, what, fsName == "ext2")
	if n, first := wrongFiles(d.to, want, true); res.code == 0 && n > 0 {
		t.Errorf("%s %d artifacts are not there (e.g. %s), yet run 1 exited 0, which says every one is", what, n, first)
	} else {
		logTorn(t, d.to, want, what)
	}
	crashRerun(t, d, args, want, what)
}

// hasZeroBlock reports whether f holds a 4 KiB block (at a multiple of
// 4 KiB) of zeros only: what a page that never reached the disk reads as.
func hasZeroBlock(f *os.File) bool {
	buf := make([]byte, 4096)
	for off := int64(0); ; off += int64(len(buf)) {
		n, err := f.ReadAt(buf, off)
		if n > 0 && len(bytes.Trim(buf[:n], "\x00")) == 0 {
			return true
		}
		if err != nil {
			return false
		}
	}
}
