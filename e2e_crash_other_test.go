//go:build !linux

package main

// crashSkipNote: the crash-consistency tests need Linux (loop devices, FUSE)
// and are not built elsewhere.
func crashSkipNote() {}
