// Package sink is the destination side of artifact-sync: a small contract,
// Sink, for a flat namespace of slash-separated keys holding immutable byte
// strings, with implementations for a local directory (NewLocal), an S3
// bucket (NewS3) and memory (NewMemory, for tests of the code that uses a
// sink). The conformance suite in sink/sinktest checks every implementation
// against the same contract.
//
// # The contract
//
// Put is atomic. A reader of a key sees either the previous object or the
// complete new one, never a prefix, whether the write succeeds, fails, is
// cancelled or the process dies. The local sink writes a temporary file
// under DEST/.artifact-sync/tmp (same filesystem), fsyncs it, renames it
// into place and fsyncs the directory (into a folder that is another file
// system, a mount inside DEST, it copies the file beside its key first; see
// below); S3 makes an object visible only when
// a PutObject or CompleteMultipartUpload succeeds, and then checks it with
// a HEAD (size and server checksum) before the Put counts as done.
//
// PutOptions.Size is checked: a stream that ends before Size bytes, or goes
// on after them, makes Put fail (ErrShortStream, ErrLongStream) and leaves
// nothing at the key. Size -1 means the length is unknown.
//
// Missing objects are reported with errors that satisfy
// errors.Is(err, fs.ErrNotExist).
//
// Keys are checked by ValidKey before any I/O, by every method of every
// sink: no empty, absolute, NUL or backslash-containing keys, no "." or ".."
// segments, no empty segments and no trailing slash. Keys stay inside the
// destination however they are joined to it. A refused key fails with an
// error matching ErrInvalidKey that is also permanent (IsPermanent).
//
// Errors that retrying cannot fix (a full or read-only disk, permission
// denied, a missing S3 bucket, rejected credentials, an invalid key) satisfy
// IsPermanent, so the caller's single retry layer can stop at once. Sinks
// never retry a streaming write as a whole themselves: the stream cannot be
// rewound, so the caller retries the whole transfer. What a sink holds in
// memory can be sent again, so S3 lets the SDK retry each small object and
// each part of a multipart upload.
//
// DEST/.artifact-sync/ (or <prefix>/.artifact-sync/ on S3) is reserved for
// the tool's own state: temporary and partial files, the lock, the
// manifest, the records of unfinished S3 multipart uploads. List leaves it
// out unless the prefix asked for it.
//
// # Kept bytes and crash safety (Local)
//
// A large object's file moves from tmp/ to its key's slot in
// DEST/.artifact-sync/partial/ at its first checkpoint. Checkpoints come
// every 16 MiB, every second once 1 MiB waits, and when a write fails or is
// cancelled. A checkpoint fsyncs
// the file, then replaces the slot's description (written to a temporary
// file, fsynced, renamed) with the spans written before that fsync began.
// While the object arrives its checkpoints run beside the writes (one at a
// time), so a download does not stop for each fsync; moving, keeping or
// dropping the file waits for the one running. So at every instant a
// description names only bytes that are on disk:
//
//   - a kill or a power cut between two checkpoints loses at most what
//     arrived since the last one completed; the description still tells the
//     truth;
//   - a file without a description (killed before its first checkpoint,
//     or between moving a file and describing it) is never resumed, and
//     the next lock holder deletes it; so is a description without a file;
//   - before a resume truncates or overwrites a file, its description is
//     first narrowed to what stays, so no crash can leave it naming bytes
//     that were cut;
//   - the final rename into place comes after an fsync of the whole file,
//     and the manifest records the object only after that rename and an
//     fsync of its folder; or, batched (below), the manifest records it
//     only after a Sync that began after the rename.
//
// A key whose folder is another file system than DEST/.artifact-sync (a
// disk or tmpfs mounted inside DEST) cannot be renamed into: rename(2)
// fails with EXDEV, every time. Such a file is still written, kept and
// resumed under DEST/.artifact-sync as above; only its placing differs
// (placeAcross):
//
//   - the folder is first named in a mark in DEST/.artifact-sync/across/,
//     fsynced with its folder, so no copy exists that the mark does not
//     lead to;
//   - the complete file is copied into a temporary file beside the key
//     (".artifact-sync-tmp-" and 26 random characters), which is fsynced,
//     renamed over the key and its folder fsynced; the folders above it are
//     fsynced once per run. This happens before the Put returns, never in
//     a batch: Sync flushes DEST's own file system, not this one. So the
//     manifest records the object only once its bytes and name are on the
//     disk that holds it, and the key shows the old object or the new one;
//   - only then are the kept file and its description removed; a crash
//     before that leaves them, and the next attempt places the object
//     again from them without fetching anything;
//   - a copy a crash left beside a key is removed by the next holder of
//     the lock, from the folders the marks name, and the marks with it.
//
// Any other EXDEV (the tool's own folders split over mounts) is permanent:
// retrying cannot fix it. TestLocalPlacesFilesOnAMountInsideTheDestination
// (tmpfs and ext4 on a loop device), TestLocalRemovesCopiesAKilledRunLeftOnAMount
// and TestLocalStateOverTwoMountsIsPermanent check these steps, and the
// root package's TestMountInsideTheDestination a killed run of the binary.
//
// # Batched durability (Local, Batcher)
//
// Two fsyncs per small file (the file, then its folder) cost more than
// the file. Pull therefore turns batching on: a finished file is renamed
// into place as before, without those fsyncs, and every manifest write
// (journal or snapshot) first calls Sync, which makes durable everything
// placed before it: one syncfs(2) of the destination's file system on
// Linux (or, with ARTIFACT_SYNC_BATCH_SYNC=fsync, fsyncs of the batch's
// files and then of their folders; elsewhere the fsyncs stay per file).
// The manifest takes the entries of a write before calling Sync, and an
// entry is recorded only after its file was renamed, so:
//
//   - a record in the manifest store always names a file (and folders)
//     that a Sync which began after its rename made durable, so a power cut
//     never leaves a record of data the disk may not hold: the same
//     guarantee as an fsync per file;
//   - a kill of the process loses nothing placed: the page cache outlives
//     the process, so what was renamed is complete at its key, recorded or
//     not;
//   - a power cut may leave a file that was renamed but not yet synced
//     empty or short at its key. No record names it, so the next pull
//     fetches it again and replaces it (it never adopts a file it has no
//     record of, whatever its size); a record of an older version of
//     that key no longer matches its size, so repair fetches it too, and
//     pull --verify catches one that kept its size.
//
// The tool's own files under DEST/.artifact-sync/ are never batched: the
// manifest's snapshot and journals are written to a temporary file,
// fsynced, renamed into place and their folder fsynced before Put returns,
// because the manifest relies on them at once (it removes the journals a
// snapshot replaces right after writing it). The state folders are made
// durable as they are created. TestStateFilesAreDurableWhenBatching checks
// the order.
//
// # Failed flushes
//
// A flush that fails is never tried again and trusted. When writeback
// fails, the kernel reports the error and may drop the pages it could not
// write, marking them clean: a second fsync or syncfs returns 0 although
// the data is gone (PostgreSQL's "fsyncgate"). And an error is reported
// only to descriptors that were open when it happened (errseq): a
// descriptor opened afterwards never sees it. So:
//
//   - the syncfs descriptor is opened by Batch, before anything is written,
//     and kept for the run; in fsync mode the files are fsynced through
//     the descriptors that wrote them. No error is missed for want of a
//     descriptor that was open (TestSyncSeesAWritebackErrorReportedElsewhere:
//     another syncfs is told of the error first; and, through the binary,
//     TestFailingDiskNeverRecordsWhatItLost in both modes; both on an ext2
//     whose loop device fills its tmpfs).
//   - a Sync that fails returns a *FlushError naming every object placed
//     since the last Sync that succeeded, including those placed while it
//     ran, and drops them from the batch: no later Sync covers them
//     (TestFailedSyncNamesWhatItCoveredOnce). The caller must not record
//     them; it writes them again, from their source, and records them
//     once a later Sync covering that new write succeeds (in syncfs mode
//     that Sync goes through the same kept descriptor, whose errseq has
//     moved past the error it reported, so a new failure is reported
//     anew; in fsync mode the new file's own descriptor sees it); what
//     fails again is failed, and the next run fetches it again
//     (TestFailedFlushIsWrittenAgain, TestFlushFailingAgainFailsOnce in
//     package sync).
//   - a file whose data was written before a failure but placed after it
//     is not among those keys; so once a Sync has failed, every file is
//     also fsynced through its own descriptor, open since before its data
//     was written, which sees any error of its pages. Its error fails that
//     write alone (TestFailedSyncNamesWhatItCoveredOnce).
//   - a write whose own fsync failed (the file's, its folder's, or a
//     checkpoint's) is a *FlushError too, and its bytes are discarded, not
//     kept for a resume: keeping them would fsync them again and describe
//     them as durable.
//   - a flush error is not permanent whatever its errno (ENOSPC from an
//     fsync is writeback failing, not a full file system): the caller
//     decides when a destination that keeps failing stops the run.
//   - folders: a failed Sync keeps the folders it took for the next Sync
//     (fsync mode), since files placed in them later are known to be in
//     folders already made; and without batching, a folder a run finds
//     rather than makes is fsynced in its parent once too, as an earlier
//     attempt whose fsync of the parent failed leaves a folder that exists
//     but is not durable (TestLazyFSFailingFsync: records of files whose
//     folder a power cut took).
//   - a failing disk can damage more than a failed flush names (ext2, with
//     no journal, reads a block bitmap whose write failed back stale and
//     hands a recorded file's blocks to a later one): the caller re-hashes
//     everything it records in the next run (TestFailingDisk).
//
// The whole argument is checked from outside by the crash-consistency
// tests at the repository's root, on real kernels: TestPowerCut (ext4,
// XFS, btrfs on loop devices, the image cloned at a random instant during
// a run and after one), TestLazyFSPowerCut (a FUSE file system that keeps
// only what was fsynced), TestFailingDisk (write-back failing with EIO or
// ENOSPC under ext2 and ext4) and TestLazyFSFailingFsync (fsyncs failing,
// their data dropped as Linux does). Each checks that every recorded file
// is byte-correct after the cut and that a rerun leaves the mirror whole.
//
// A folder fsynced in fsync mode is opened for the Sync, after its entries
// changed; an error of its writeback before that open is seen only by the
// syncfs of the default mode.
//
// What the description does not prove is the version: the caller resumes
// only when the source answers with the same validator (If-Range) and the
// same total, and drops the kept bytes otherwise.
//
// # Optional abilities
//
// Abilities only some sinks have are small interfaces discovered by a type
// assertion, as rclone does:
//
//   - Resumer: a Put that failed keeps the bytes it received, described
//     with the object's declared size and the source's validator, so a
//     later run continues from there with PutFrom instead of starting over
//     (Local, Memory; S3 keeps the parts the server acknowledged, so it
//     resumes at a part boundary).
//   - RangeWriter and RangeResumer: an object of known size written in
//     pieces over several connections; its written ranges survive an
//     Abort, a kill or a power cut and are reopened with Reopen (Local).
//   - Locker: a named, exclusive lease so two runs do not write the same
//     destination at once (Local with flock(2), S3 with a conditional-write
//     lease object on servers proven to enforce conditional writes, Memory).
//
// # The S3 path: checked last, fenced by the server
//
// Every write the tool relies on is checked after the last write that could
// change it, or the ability is probed once per destination on a scratch
// object under .artifact-sync/, as the lock probes conditional writes:
//
//   - a multipart object gets its SHA-256 tag before the HEAD that checks
//     its size and CRC64NVME, and tagging is used only where a probe saw
//     the tag leave the object as it was and read the tag back (gofakes3
//     1.2.0 stores the tagging XML as the object and answers 200; checked
//     by TestS3TaggingThatReplacesTheObject and, through the binary,
//     TestS3TaggingServerKeepsObjectsWhole, against gofakes3 itself and a
//     double in front of the real server);
//   - an upload record whose upload the server can neither list nor abort
//     (405 or 501, as s3rver 3.7.1 answers) is dropped and the upload
//     starts over (TestS3UploadRecordThatCannotBeListedOrAborted,
//     TestS3KilledUploadOnServerWithoutUploadManagement);
//   - the holder of the S3 lock writes the manifest with If-Match on the
//     version it last read or wrote (FencedPut), so a write that arrives
//     after another run took the lease over fails on the server, with no
//     window between a check and the write (TestS3FencedPut,
//     TestS3StaleHoldersManifestWriteFails); the lease runs out by the
//     server's clock alone (TestS3LockExpiryByServersClock).
package sink
