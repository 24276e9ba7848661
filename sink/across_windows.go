package sink

import (
	"errors"

	"golang.org/x/sys/windows"
)

// crossDevice reports a rename refused because it would cross volumes.
func crossDevice(err error) bool { return errors.Is(err, windows.ERROR_NOT_SAME_DEVICE) }
