// Package manifest keeps the record of artifacts that have been transferred
// to a destination, so that a later run can skip them.
//
// CircleCI reports neither the size nor a checksum of an artifact, so the
// manifest is the only integrity record: for each artifact (project, job
// number, node index, path) it holds the destination key, the size and the
// SHA-256 of the bytes written, the source's ETag and Last-Modified when it
// sent them, when the transfer completed and which run did it.
//
// # Storage model
//
// The manifest lives in a [Store]: a flat set of named files, each written
// whole and atomically. That is all an S3 bucket offers (objects cannot be
// appended to), so the same code serves a directory (DEST/.artifact-sync/,
// see [DirStore]) and a bucket (prefix/.artifact-sync/), and a scheduled job
// on a fresh runner resumes from the bucket alone.
//
// The manifest is a log made of two kinds of file:
//
//   - manifest.json, the snapshot: every entry at some point in time.
//   - journal-RUN-SEQ.jsonl, the journals: what a run recorded between two
//     flushes. Each flush writes a new journal file, whole.
//
// [Manifest.Record] only updates memory; a background flusher writes what
// is pending as the run's next journal every [Options.FlushInterval]
// (default 1s), or sooner when [Options.FlushEntries] records wait.
// [Manifest.Close], and a flush that finds more than [Options.MaxJournals]
// journals, compacts: it writes a new snapshot holding every entry and
// naming the journals it includes, then removes those journals.
//
// Besides entries, the log holds done marks ([Done], format 2): that a job
// or a workflow is finished for good under one selection of artifacts, so
// a nightly run need not ask the API about it again. They are journaled
// like entries, after the entries of the same flush, and kept in the
// snapshot after the entries. A mark is a claim its reader checks (it
// counts the entries it stands for), so a mark whose entries were lost
// since is as harmless as a lost record. Files of format 1 load as a log
// without marks.
//
// # Memory
//
// A Manifest holds every entry in memory, in a compact form: an entry's
// strings in one allocation, the project and run names once for all
// entries, the index an open-addressing table of numbers rather than a map
// of IDs to entries; about 200 bytes an entry with the default layout. Its
// files are never held whole: the snapshot is decoded as it is read, a
// batch of lines at a time on all CPUs, and written as it is encoded, to a
// store that takes streams ([OpenFileStore], [WriteFromStore]; [DirStore]
// does, and so does the store artifact-sync keeps in a destination).
// Neither takes a copy of the entries: they are sorted as a list of numbers.
// So a manifest of 100,000 entries (a 35 MB snapshot) takes about 20 MB,
// however often it is loaded, compacted or iterated.
//
// # Format (version 1)
//
// Both kinds of file are UTF-8 JSON, meant to be read and diffed by people.
// The snapshot is one JSON document with one entry per line:
//
//	{
//	  "format": 1,
//	  "tool": "artifact-sync 1.2.0",
//	  "destination": "s3://bucket/backups",
//	  "created": "2025-01-02T03:04:05Z",
//	  "updated": "2025-01-09T03:04:05Z",
//	  "run": "20250109T030000Z-8f3a9c1d",
//	  "generation": 7,
//	  "journals": [
//	    "journal-20250109T030000Z-8f3a9c1d-000001.jsonl"
//	  ],
//	  "entries": [
//	    {"project":"gh/org/repo","job_number":12,"node_index":0,"path":"dist/app.tgz","key":"12/0/dist/app.tgz","size":1048576,"sha256":"…","etag":"\"abc\"","completed":"2025-01-09T03:00:07.25Z","run":"20250109T030000Z-8f3a9c1d"}
//	  ]
//	}
//
// Entries are sorted by project, job number, node index and path. A
// journal is JSON Lines: a header line, then one record per line, in the
// order they were recorded:
//
//	{"format":1,"tool":"artifact-sync 1.2.0","destination":"s3://bucket/backups","run":"20250110T030000Z-1b2c3d4e","generation":8,"seq":1,"written":"2025-01-10T03:00:08Z"}
//	{"project":"gh/org/repo","job_number":13,"node_index":0,"path":"dist/app.tgz","key":"13/0/dist/app.tgz","size":1048576,"sha256":"…","completed":"2025-01-10T03:00:07.5Z","run":"20250110T030000Z-1b2c3d4e"}
//	{"project":"gh/org/repo","job_number":12,"node_index":0,"path":"dist/app.tgz","removed":"2025-01-10T03:00:07.6Z","run":"20250110T030000Z-1b2c3d4e"}
//
// A record with "removed" forgets the entry for its ID ([Manifest.Remove]).
// Times are RFC 3339 in UTC. Fields this version does not know are
// ignored; a file whose "format" is larger than 1 is refused.
//
// # Loading
//
// Loading reads the snapshot, then applies every journal the snapshot does
// not name, in log order: by generation, then run, then sequence number,
// each file's lines in order. For each ID the later record wins. A run's
// generation is one more than the largest it loaded, so everything a run
// writes orders after everything it saw; the order does not depend on
// clocks.
//
// A snapshot that cannot be read at all (not JSON: empty, NUL bytes, cut
// short) is what a power cut leaves on a file system that does not write a
// file's data before its size or name. What Open does with it is
// [Options.Rebuild]: refuse it (the default, for verify), or rebuild the
// manifest from what survives, the same load minus what was lost: the
// entries from the snapshot's first up to its first damaged line, under
// its header if that is intact (which names the journals it includes, as
// ever), then every journal it does not name (all of them if the header
// is lost), in log order. Nothing past damage is taken, so every entry
// rebuilt is one that was recorded, and no older record is applied over a
// newer one. No older snapshot is kept to fall back on: each replaces the
// last by a rename, and the temporary file of a write that did not finish
// is never read, since the journals it would have replaced are removed
// only after it is in place. [RebuildAside], for a pull holding the destination's lock,
// then keeps the file as manifest.json.unreadable-RUN (never removed, for
// people to look at) and writes the rebuilt manifest as a new snapshot,
// which replaces the unreadable one and the journals as a compaction does,
// so the next run and verify load it as it is. [Manifest.Rebuilt] reports
// what was rebuilt, for one warning. An artifact whose record was lost is
// transferred again, as after any lost record; a file already at the
// destination is not taken on trust by its size: without a record it has
// no hash, so it is replaced, and nothing is deleted.
//
// # Crash safety
//
// A SIGKILL or power cut at any instant leaves a manifest that loads, and
// loses at most the records made since the last flush that completed:
//
//   - Every file is written whole, atomically and durably before its write
//     returns (DirStore: temporary file, fsync, rename, fsync of the
//     directory, see durable.WriteFile; a store in the local sink, which
//     never batches the tool's own files, the same, checked by sink's
//     TestStateFilesAreDurableWhenBatching; S3: a single PUT, or for a
//     large snapshot a multipart upload, which appears whole when it
//     completes), so each file is its old content, its new content or, for
//     a new file, absent; never a mix, even when it is written as a stream
//     that fails halfway. A journal file is never changed after it is
//     written, and nothing relies on a journal or a snapshot before its
//     write returned. A write that fails is written again from memory as a
//     new file, never fsynced again and trusted.
//   - Records become durable when the journal holding them is written, at
//     most FlushInterval (plus the time of one write) after Record, or
//     sooner when FlushEntries records wait. A crash before then loses only
//     those records; Flush waits for them explicitly.
//   - A snapshot replaces the previous one atomically and names the journals
//     it includes; the journals it replaces are removed only once its write
//     returned, so once it is durable (TestJournalsGoOnlyAfterTheSnapshotIsDurable).
//     A crash before it is written leaves the old snapshot and
//     every journal: the same state. A crash after it is written but before
//     the journals are removed leaves journals the next load skips (and the
//     next compaction removes), so no record is applied twice or out of
//     order, and a removal cannot be undone by an older journal.
//   - A journal that is partially written anyway (a store that is not
//     atomic, a disk that lies about fsync) ends in a torn line; loading
//     drops it and keeps the records before it. A power cut on a file
//     system that does not write data before size leaves blocks of NUL
//     bytes instead, which nothing this package writes holds (JSON escapes
//     control characters): the journal ends at the first line holding one,
//     so an empty or zero-filled journal holds nothing. Otherwise only the
//     last line is forgiven: a bad line in the middle of a journal is
//     corruption.
//   - A snapshot left unreadable the same way is rebuilt by the next
//     writer (see Loading), which loses only the entries past the damage:
//     their artifacts are transferred again.
//
// Records never name data the disk may not hold. For a destination that
// batches its fsyncs, Options.Durable makes durable the data of every entry
// a write holds before that write (the entries are taken first). If it
// fails, the disk may have lost that data for good, and a flush that
// succeeds afterwards proves nothing (the kernel may have dropped the pages
// it could not write and marked them clean, and reports the error once):
// the entries that write took are removed, never written by a later one
// (TestDurableBeforeEveryWrite); the caller, told which files the failed
// flush covered, removes the entries recorded since likewise (sync's
// TestFailedFlushIsWrittenAgain).
//
// Losing records is harmless: the manifest is a record of work done, not
// the truth about the destination. A lost record makes the next run
// transfer that artifact again. A kept record is not trusted blindly
// either: before skipping an artifact the caller checks that the
// destination holds an object of the recorded size (and re-hashes it
// against the recorded SHA-256 with pull --verify, or when a disk error of
// an earlier run covered its key), and transfers it again if not.
//
// # Errors
//
// Bad state is loud. A snapshot that is JSON but not a manifest (no
// format, a bad entry), a file of a newer format, a manifest recorded for
// another destination (a manifest kept inside its destination records
// [SelfDestination] instead of a path, so it stays valid when the mirror is
// copied or moved), or a malformed line in the middle of a journal makes
// [Open] fail with an [*Error] that names the file, says what is wrong and
// what to do, and matches [ErrCorrupt], [ErrVersion] or [ErrDestination]
// with errors.Is. Such a manifest is never reset or overwritten: no crash
// makes it, so a person must look. This holds for a torn snapshot too:
// one whose intact header says a newer format or another destination is
// refused, not rebuilt.
//
// A snapshot that cannot be read at all is a crash's doing, not bad state:
// Open refuses it with ErrCorrupt and a message saying that a pull
// rebuilds it, unless [Options.Rebuild] lets it rebuild (see Loading).
//
// One Manifest writes a store at a time; the caller holds a lock on the
// destination for the length of a run. A Manifest that only looks entries
// up writes nothing, even on Close, so a read-only store serves verify.
package manifest
