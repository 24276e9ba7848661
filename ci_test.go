package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCIRunSaysWhatIsMissing: .ci/run on a machine where it may not install
// packages (not root) names what is missing and how to get it, and stops
// before doing anything else, instead of failing inside apt-get.
func TestCIRunSaysWhatIsMissing(t *testing.T) {
	bin := t.TempDir()
	goPath, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not on PATH")
	}
	for name, target := range map[string]string{"go": goPath, "dirname": "", "git": ""} {
		if target == "" {
			if target, err = exec.LookPath(name); err != nil {
				t.Skipf("%s is not on PATH", name)
			}
		}
		if err := os.Symlink(target, filepath.Join(bin, name)); err != nil {
			t.Fatal(err)
		}
	}
	// Not root, whoever runs the test.
	if err := os.WriteFile(filepath.Join(bin, "id"), []byte("#!/bin/sh\necho 1000\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash is not on PATH")
	}
	cmd := exec.Command(bash, ".ci/run")
	cmd.Env = []string{"PATH=" + bin, "HOME=" + t.TempDir()}
	out, err := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Fatalf(".ci/run exited %d (%v), want 1:\n%s", code, err, out)
	}
	for _, want := range []string{"missing: curl tmux", "jq", "wget", "aria2", "sudo apt-get install curl tmux"} {
		if !strings.Contains(string(out), want) {
			t.Errorf(".ci/run does not say %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "installing") || strings.Contains(string(out), "== gofmt") {
		t.Errorf(".ci/run went on without the tools:\n%s", out)
	}
}
