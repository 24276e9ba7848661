//go:build !linux

package sink

import (
	"errors"
	"os"
)

const haveSyncfs = false

func syncfs(*os.File) error { return errors.ErrUnsupported }
