//go:build linux

package sink

import (
	"os"

	"golang.org/x/sys/unix"
)

const haveSyncfs = true

// syncfs flushes the file system that holds f: syncfs(2), which since
// Linux 5.8 also reports write errors of any file on it.
func syncfs(f *os.File) error {
	c, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := c.Control(func(fd uintptr) {
		for {
			e := unix.Syncfs(int(fd))
			if e != unix.EINTR {
				if e != nil {
					serr = &os.SyscallError{Syscall: "syncfs", Err: e}
				}
				return
			}
		}
	}); err != nil {
		return err
	}
	return serr
}
