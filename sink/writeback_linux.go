//go:build linux && (amd64 || arm64)

package sink

import (
	"os"
	"syscall"
)

// startWriteback asks the kernel to start writing [off, off+n) of f to disk
// now, without waiting (sync_file_range with SYNC_FILE_RANGE_WRITE). Done
// while a large file is still arriving, it leaves little for the final fsync
// to wait for. Errors are ignored: the fsync that follows reports any.
func startWriteback(f *os.File, off, n int64) {
	const syncFileRangeWrite = 2
	syscall.Syscall6(syscall.SYS_SYNC_FILE_RANGE, f.Fd(), uintptr(off), uintptr(n), syncFileRangeWrite, 0, 0)
}
