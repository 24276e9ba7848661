//go:build unix

package sink

import (
	"errors"
	"syscall"
)

// crossDevice reports a rename refused because it would cross file systems.
func crossDevice(err error) bool { return errors.Is(err, syscall.EXDEV) }
