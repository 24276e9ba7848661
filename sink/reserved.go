package sink

import (
	"fmt"
	"strings"
)

// StateDir is the folder below the destination that holds the tool's own
// state (manifest, lock, temporary and partial files); see the package
// documentation.
const StateDir = ".artifact-sync"

const stateDir = StateDir

// isReserved reports whether key (or a List prefix) lies in stateDir.
func isReserved(key string) bool {
	return key == stateDir || strings.HasPrefix(key, stateDir+"/")
}

// validLockName checks a Locker name: a single valid key segment.
func validLockName(name string) error {
	if err := ValidKey(name); err != nil {
		return fmt.Errorf("lock name: %w", err)
	}
	if strings.Contains(name, "/") {
		return &PermanentError{Err: fmt.Errorf("lock name %q: must not contain a slash", name)}
	}
	return nil
}
