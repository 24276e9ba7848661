//go:build !linux

package main

import "errors"

var errNoMount = errors.New("mounting a tmpfs is only done on Linux")

func peakRSS(int) int64                 { return 0 }
func mountTmpfs(dir, opts string) error { return errNoMount }
func remount(dir, opts string) error    { return errNoMount }
func unmount(dir string) error          { return errNoMount }
