// Package lazyfs is a FUSE file system for crash tests, after LazyFS (used
// by Jepsen on etcd and PostgreSQL): it passes every operation through to a
// backing folder, and keeps apart what has been made durable. A file's
// bytes become durable when it is fsynced; a folder's names (created,
// renamed, removed) when the folder is fsynced; everything when [FS.Sync]
// is called, as syncfs(2) or sync(2) would. [FS.LosePower] unmounts it and
// leaves in the backing folder only what was durable, as a power cut would,
// so a test can mount it again and see what a program's promises were
// worth.
//
// It can also fail: [FS.FailSyncs] makes fsyncs return EIO, and, as Linux
// does after a write-back error, the data of a file whose fsync failed is
// dropped: a later fsync of the same file succeeds without making it
// durable ("fsyncgate").
//
// syncfs(2) of a FUSE mount does not reach the server: the kernel sends
// FUSE_SYNCFS to virtiofs only (checked on Linux 6.18: a syncfs of the
// mount sends nothing), so a program that flushes with syncfs sees success
// while nothing was made durable. Tests run such a program in a mode that
// fsyncs files and folders.
//
// It needs Linux, root (or fusermount) and /dev/fuse.
package lazyfs
