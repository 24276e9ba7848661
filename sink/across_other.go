//go:build !unix && !windows

package sink

func crossDevice(err error) bool { return false }
