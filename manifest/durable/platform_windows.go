package durable

// Windows cannot open a folder as a file to flush it: renames are as
// durable as NTFS makes them.
const syncDirUnsupported = true
