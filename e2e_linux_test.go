package main

import (
	"os"
	"syscall"
)

// maxRSS is the peak resident set of a process that has exited, in bytes.
func maxRSS(ps *os.ProcessState) int64 {
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss << 10 // KiB on Linux
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
