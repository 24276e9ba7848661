package main

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// peakRSS is the peak resident set (VmHWM) of the running process pid, in
// bytes; 0 once it has exited.
func peakRSS(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// mountTmpfs mounts a tmpfs with opts (e.g. "size=4m") on dir. It needs
// root, or CAP_SYS_ADMIN.
func mountTmpfs(dir, opts string) error {
	return syscall.Mount("tmpfs", dir, "tmpfs", 0, opts)
}

// remount changes the options of the tmpfs on dir: "ro", or "size=64m".
func remount(dir, opts string) error {
	var flags uintptr = syscall.MS_REMOUNT
	if opts == "ro" {
		flags |= syscall.MS_RDONLY
		opts = ""
	}
	return syscall.Mount("tmpfs", dir, "tmpfs", flags, opts)
}

func unmount(dir string) error { return syscall.Unmount(dir, syscall.MNT_DETACH) }
