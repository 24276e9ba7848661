package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
)

// TestFileSystemErrorsAreSentences: what the file system refuses at the
// destination reaches the user as one sentence naming the path, the
// system's reason and the fix, never a bare "stat ...: not a directory" or
// "mkdirat ...: permission denied". The conditions are real: a file where
// a folder belongs, a name longer than the file system allows, a folder
// the user may not write (or, as root, an immutable one), a read-only and
// a full file system (tmpfs mounts, as root).
func TestFileSystemErrorsAreSentences(t *testing.T) {
	w, _ := smallWorld(3, 1000)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
	env := toolEnv(t, srv)
	pull := func(t *testing.T, to string) e2eResult {
		t.Helper()
		return runTool(t, env, time.Minute, "pull", slugArg, "--to", to)
	}
	wantLine := func(t *testing.T, r e2eResult, want string) {
		t.Helper()
		wantCode(t, r, 2)
		if got := strings.TrimSuffix(r.stderr, "\n"); got != want {
			t.Errorf("stderr:\n%s\nwant:\n%s", got, want)
		}
	}
	const resume = "; once fixed, run the same command again to resume"

	t.Run("--to below a file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "notes.txt")
		os.WriteFile(file, []byte("a file"), 0o644)
		to := filepath.Join(file, "mirror")
		wantLine(t, pull(t, to), "artifact-sync: cannot look at "+to+": not a directory: "+file+
			" is a file where a folder belongs: move it away, or pick another --to"+resume)
	})

	t.Run("--manifest below a file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "notes.txt")
		os.WriteFile(file, []byte("a file"), 0o644)
		m := filepath.Join(file, "manifest")
		r := runTool(t, env, time.Minute, "pull", slugArg, "--to", filepath.Join(t.TempDir(), "mirror"), "--manifest", m)
		if r.code == 0 {
			t.Fatalf("exit 0 with a --manifest below a file")
		}
		want := "cannot open " + m + ": not a directory: " + file + " is a file where a folder belongs: move it away, or pick another --manifest"
		if !strings.Contains(lastLine(r.stderr), want) {
			t.Errorf("stderr does not say %q:\n%s", want, r.stderr)
		}
	})

	t.Run("--to with a name too long", func(t *testing.T) {
		to := filepath.Join(t.TempDir(), strings.Repeat("n", 300))
		r := pull(t, to)
		wantCode(t, r, 2)
		wantOneLine(t, r, "cannot look at "+to+": file name too long: its longest name is 300 bytes",
			"pick a shorter --to, or a --layout that makes shorter paths")
	})

	t.Run("a file where a folder belongs", func(t *testing.T) {
		// Job 1's artifacts go under DEST/1/0/: a file named 1 blocks them.
		dir := filepath.Join(t.TempDir(), "mirror")
		os.Mkdir(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "1"), []byte("in the way"), 0o644)
		r := pull(t, dir)
		wantCode(t, r, 1)
		want := "cannot create folder " + filepath.Join(dir, "1") + ": a file is in its place: move that file away, or pick another --to or --layout"
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout does not say %q:\n%s", want, r.stdout)
		}
	})

	t.Run("a folder the user may not write", func(t *testing.T) {
		parent := filepath.Join(t.TempDir(), "locked")
		os.Mkdir(parent, 0o755)
		reason := "permission denied"
		fix := "give the user running artifact-sync write access to " + parent + ", or pick another --to"
		if os.Geteuid() == 0 {
			// Permission bits do not stop root; an immutable folder does.
			if out, err := exec.Command("chattr", "+i", parent).CombinedOutput(); err != nil {
				t.Skipf("as root, needs chattr +i on %s: %v: %s", parent, err, out)
			}
			t.Cleanup(func() { exec.Command("chattr", "-i", parent).Run() })
			reason = "operation not permitted"
			fix = "give the user running artifact-sync write access to " + parent + " (and clear an immutable attribute there: lsattr, chattr -i), or pick another --to"
		} else {
			os.Chmod(parent, 0o555)
			t.Cleanup(func() { os.Chmod(parent, 0o755) })
		}
		to := filepath.Join(parent, "mirror")
		wantLine(t, pull(t, to), "artifact-sync: cannot create folder "+to+": "+reason+": "+fix+resume)
	})

	mounted := func(t *testing.T, opts string) string {
		t.Helper()
		dir := filepath.Join(t.TempDir(), "mnt")
		os.Mkdir(dir, 0o755)
		if err := mountTmpfs(dir, opts); err != nil {
			t.Skipf("cannot mount a tmpfs here (%v)", err)
		}
		t.Cleanup(func() { unmount(dir) })
		return dir
	}

	t.Run("read-only file system", func(t *testing.T) {
		dir := mounted(t, "size=1m")
		if err := remount(dir, "ro"); err != nil {
			t.Fatal(err)
		}
		to := filepath.Join(dir, "mirror")
		wantLine(t, pull(t, to), "artifact-sync: cannot create folder "+to+
			": read-only file system: remount that file system read-write, or pick another --to"+resume)
	})

	t.Run("full file system", func(t *testing.T) {
		dir := mounted(t, "size=8k")
		r := pull(t, dir)
		wantCode(t, r, 2)
		wantOneLine(t, r, "cannot write "+dir+string(filepath.Separator), ": no space left on device: free space on that file system, or pick another --to")
	})
}

// TestNameTooLongFailsItsArtifactAlone: an artifact whose name is longer
// than the destination's file system allows fails alone, at once (a retry
// cannot place it, so it is downloaded once), with a sentence saying why
// and what to do; the others are written.
func TestNameTooLongFailsItsArtifactAlone(t *testing.T) {
	w, arts := smallWorld(3, 1000)
	arts[0].Job().AddArtifact(0, "out/"+strings.Repeat("n", 300)+".bin", 1000)
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken})
	d := localDest(t, srv)
	r := runTool(t, d.env, time.Minute, d.pull()...)
	wantCode(t, r, 1)
	want := ": file name too long: its longest name is 304 bytes"
	if !strings.Contains(r.stdout, want) || !strings.Contains(r.stdout, "a --layout that makes shorter paths") {
		t.Errorf("stdout does not say %q and the fix:\n%s", want, r.stdout)
	}
	d.check(t, mirrorOf(arts...), false)
	if n := srv.DownloadTotals().Started; n != len(arts)+1 {
		t.Errorf("%d downloads for %d artifacts: the one whose name is too long was retried", n, len(arts)+1)
	}
}
