package sink

import (
	"errors"
	"os"
	"strings"
	"syscall"
)

// processScope names the space in which this process's PID means something:
// this boot of this kernel (containers share it) and this PID namespace
// (containers usually have their own). "" if it cannot be told.
func processScope() string {
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	ns, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(boot)) + " " + ns
}

// processGone reports whether no process with pid exists in this PID
// namespace. A zombie, or a new process that reused the PID, counts as
// existing.
func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
