//go:build !windows

package durable

const syncDirUnsupported = false
