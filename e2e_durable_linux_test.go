package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
)

// failingDisk is an ext2 file system on a loop device whose backing file
// lies on a tmpfs smaller than the file: once the tmpfs is full, writeback
// to the "disk" fails with EIO, as a failing disk's does, while writes into
// the page cache still succeed.
type failingDisk struct {
	t       *testing.T
	backing string // the tmpfs holding the image
	image   string
	loop    string // /dev/loopN
	mnt     string // where the file system is mounted
}

// newFailingDisk makes a disk of size MiB backed by a tmpfs of room MiB,
// and mounts it. It skips the test without root or loop devices.
func newFailingDisk(t *testing.T, size, room int) *failingDisk {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root, for a loop device and mounts (.ci/run runs it as root)")
	}
	for _, tool := range []string{"losetup", "mkfs.ext2", "e2fsck"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: %v", tool, err)
		}
	}
	base := t.TempDir()
	d := &failingDisk{t: t, backing: filepath.Join(base, "backing"), mnt: filepath.Join(base, "mnt")}
	for _, dir := range []string{d.backing, d.mnt} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := mountTmpfs(d.backing, fmt.Sprintf("size=%dm", room)); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { unmount(d.backing) })
	d.image = filepath.Join(d.backing, "disk.img")
	if err := os.WriteFile(d.image, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(d.image, int64(size)<<20); err != nil {
		t.Fatal(err)
	}
	d.run("mkfs.ext2", "-q", "-F", "-b", "4096", d.image)
	out, err := exec.Command("losetup", "-f", "--show", d.image).CombinedOutput()
	if err != nil {
		t.Skipf("no loop device: losetup: %v: %s", err, out)
	}
	d.loop = strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", d.loop).Run() })
	d.mount()
	t.Cleanup(func() { syscall.Unmount(d.mnt, syscall.MNT_DETACH) })
	return d
}

func (d *failingDisk) run(name string, args ...string) {
	d.t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		d.t.Fatalf("%s %q: %v\n%s", name, args, err, out)
	}
}

func (d *failingDisk) mount() {
	d.t.Helper()
	if err := syscall.Mount(d.loop, d.mnt, "ext2", 0, ""); err != nil {
		d.t.Fatalf("mount %s: %v", d.loop, err)
	}
}

// powerCycle unmounts the disk (what could not be written is lost, as in a
// power cut), gives the backing tmpfs room, repairs the file system as a
// boot would (e2fsck -p fixes what an unclean ext2 needs) and mounts it
// again.
func (d *failingDisk) powerCycle(room int) {
	d.t.Helper()
	if err := syscall.Unmount(d.mnt, 0); err != nil {
		d.t.Fatalf("unmount: %v", err)
	}
	if err := remount(d.backing, fmt.Sprintf("size=%dm", room)); err != nil {
		d.t.Fatal(err)
	}
	// Drop whatever the loop device still caches, so what is read is
	// what the disk holds.
	exec.Command("blockdev", "--flushbufs", d.loop).Run()
	out, err := exec.Command("e2fsck", "-fy", d.loop).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() > 2) {
		d.t.Fatalf("e2fsck: %v\n%s", err, out)
	}
	d.mount()
}

// checkedLine is verify's count of what the manifest records, and of how
// many of those are intact: neither missing nor changed.
var checkedLine = regexp.MustCompile(`(\d+) artifacts checked: (\d+) intact, 0 missing, 0 changed,`)

// A pull onto a disk whose writeback fails (EIO) must say so and exit 1,
// whether it failed the files the failed flushes covered or wrote them
// again, and nothing it records may be missing or wrong once the disk is
// back: every file the manifest names is byte-correct after the remount.
// Once the disk has room again, a second run leaves everything correct.
func TestFailingDiskNeverRecordsWhatItLost(t *testing.T) {
	for _, mode := range []string{"syncfs", "fsync"} {
		t.Run(mode, func(t *testing.T) {
			disk := newFailingDisk(t, 64, 12)
			w, arts := smallWorld(24, 1<<20)
			srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
			env := append(toolEnv(t, srv), "ARTIFACT_SYNC_BATCH_SYNC="+mode)
			to := filepath.Join(disk.mnt, "mirror")
			pull := []string{"pull", slugArg, "--to", to, "--json", "-j", "4"}

			r := runTool(t, env, 2*time.Minute, pull...)
			s := pullSummaryOf(t, r)
			t.Logf("first run on the failing disk: exit %d, %+v", r.code, s)
			if r.code == 0 || s.DiskErrors == 0 || s.Failed == 0 && s.WrittenAgain == 0 {
				t.Errorf("a run whose disk failed to write exited %d with %d disk errors, %d failed, %d written again; want exit 1 and the lost files failed or written again\nstderr:\n%s", r.code, s.DiskErrors, s.Failed, s.WrittenAgain, r.stderr)
			}
			if r.code != 1 {
				t.Errorf("exit %d, want 1 (a rerun resumes)\nstderr:\n%s", r.code, r.stderr)
			}
			if !strings.Contains(r.stdout+r.stderr, "failed to flush") {
				t.Errorf("nothing says the disk failed to flush:\nstdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
			}

			disk.powerCycle(128)
			// Every artifact the manifest records is there, byte for
			// byte; what it does not record may be anything.
			v := runTool(t, env, time.Minute, "verify", "--to", to)
			t.Logf("verify after the disk came back: exit %d: %s%s", v.code, lastLine(v.stdout), lastLine(v.stderr))
			//
			// A run that the disk stopped may count as transferred some
			// whose records it could not write before it ended (the
			// manifest is written to the same failing disk): the manifest
			// then records fewer, or nothing, and each it records must be
			// intact. A run that was not stopped recorded all it counts.
			recorded, intact := -1, -1
			if m := checkedLine.FindStringSubmatch(v.stdout); m != nil {
				recorded, _ = strconv.Atoi(m[1])
				intact, _ = strconv.Atoi(m[2])
			} else if v.code == 2 && strings.Contains(v.stderr, "no manifest at") {
				recorded, intact = 0, 0
			}
			stopped := strings.Contains(s.Error, "the run stopped")
			if recorded < 0 || intact != recorded || recorded > s.Transferred || recorded < s.Transferred && !stopped {
				t.Errorf("after the disk came back, what the first run recorded (%d transferred) is not all there: verify exit %d\nstdout:\n%s\nstderr:\n%s", s.Transferred, v.code, v.stdout, v.stderr)
			} else if recorded < s.Transferred {
				t.Logf("the stopped run could not record %d of the %d it transferred; the %d it recorded are intact", s.Transferred-recorded, s.Transferred, recorded)
			}

			r = runTool(t, env, 2*time.Minute, pull...)
			wantCode(t, r, 0)
			checkDir(t, to, mirrorOf(arts...), true)
			wantVerified(t, dest{to: to, env: env}, len(arts))
		})
	}
}
