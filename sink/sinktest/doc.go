// Package sinktest checks implementations of sink.Sink against the
// contract documented in package sink, in the manner of
// testing/fstest.TestFS: Run takes a constructor and runs one subtest per
// rule, including the optional Resumer and Locker abilities when the sink
// has them. It also provides NewS3Bucket, which gives a test its own bucket
// on a real S3-compatible server (see s3.go) so packages that write to S3
// can be tested against the protocol itself, and NewFakeS3, an in-process
// server for the behaviours of servers that cannot be had here (one that
// ignores conditional writes).
package sinktest
