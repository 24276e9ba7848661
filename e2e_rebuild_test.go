package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
	"github.com/artifact-sync/artifact-sync/sink/sinktest"
)

// manifestFolder reads and writes the files of a destination's manifest
// (DEST/.artifact-sync/manifest/), in a directory or a bucket.
type manifestFolder struct {
	list  func(t *testing.T) map[string][]byte
	write func(t *testing.T, name string, data []byte)
}

func localManifest(dir string) manifestFolder {
	folder := filepath.Join(dir, ".artifact-sync", "manifest")
	return manifestFolder{
		list: func(t *testing.T) map[string][]byte {
			files := map[string][]byte{}
			des, _ := os.ReadDir(folder)
			for _, de := range des {
				if b, err := os.ReadFile(filepath.Join(folder, de.Name())); err == nil && de.Type().IsRegular() {
					files[de.Name()] = b
				}
			}
			return files
		},
		write: func(t *testing.T, name string, data []byte) {
			if err := os.WriteFile(filepath.Join(folder, name), data, 0o644); err != nil {
				t.Fatal(err)
			}
		},
	}
}

func bucketManifest(env sinktest.S3Env, prefix string) manifestFolder {
	folder := prefix + "/.artifact-sync/manifest/"
	client := env.Client()
	return manifestFolder{
		list: func(t *testing.T) map[string][]byte {
			ctx := context.Background()
			files := map[string][]byte{}
			out, err := client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(env.Bucket), Prefix: aws.String(folder)})
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range out.Contents {
				name := strings.TrimPrefix(aws.ToString(o.Key), folder)
				if name == "" || strings.Contains(name, "/") {
					continue
				}
				obj, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(env.Bucket), Key: o.Key})
				if err != nil {
					continue // removed since the listing
				}
				b, err := io.ReadAll(obj.Body)
				obj.Body.Close()
				if err == nil {
					files[name] = b
				}
			}
			return files
		},
		write: func(t *testing.T, name string, data []byte) {
			_, err := client.PutObject(context.Background(), &s3.PutObjectInput{
				Bucket: aws.String(env.Bucket), Key: aws.String(folder + name), Body: bytes.NewReader(data),
			})
			if err != nil {
				t.Fatal(err)
			}
		},
	}
}

// journaledKeys returns the destination keys that the journals among files
// record (and do not remove).
func journaledKeys(t *testing.T, files map[string][]byte) map[string]bool {
	keys := map[string]bool{}
	for name, data := range files {
		if !strings.HasPrefix(name, "journal-") {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			if strings.Contains(line, `"removed"`) {
				t.Fatalf("journal %s removes an entry: %s", name, line)
			}
			if _, rest, ok := strings.Cut(line, `"key":"`); ok {
				k, _, _ := strings.Cut(rest, `"`)
				keys[k] = true
			}
		}
	}
	return keys
}

// TestEmptyManifestAfterPowerCutIsRebuilt plays what a power cut leaves on a
// file system that does not write data before a file's size: a snapshot of
// 0 bytes beside the journals of a run cut off before it compacted. The
// next pull warns once, keeps the empty file aside, rebuilds the manifest
// from the journals, fetches again only what they do not record, exits 0
// with the tree byte-exact, and verify and a further pull find everything
// in place; a dry run before it says what the pull will do and writes
// nothing. Before, every later run exited 2 ("invalid JSON ... move it
// aside").
func TestEmptyManifestAfterPowerCutIsRebuilt(t *testing.T) {
	for _, target := range []string{"dir", "s3"} {
		t.Run(target, func(t *testing.T) {
			t.Parallel()
			w := circlecitest.NewWorld()
			wf := w.AddProject(slugArg, "main").AddPipeline("main").AddWorkflow("build")
			first, second := wf.AddJob("first", circlecitest.JobOptions{}), wf.AddJob("second", circlecitest.JobOptions{})
			var arts []*circlecitest.Artifact
			for i := range 6 {
				arts = append(arts, first.AddArtifact(0, fmt.Sprintf("out/first-%d.bin", i), 4<<10))
			}
			for i := range 6 {
				arts = append(arts, second.AddArtifact(0, fmt.Sprintf("out/second-%d.bin", i), 4<<10))
			}
			// The large one is still downloading when the kill comes.
			big := second.AddArtifact(0, "out/second-big.bin", 8<<20)
			arts = append(arts, big)
			want := mirrorOf(arts...)
			srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken, Bandwidth: 2 << 20, Redirect: target == "s3"})

			d := localDest(t, srv)
			folder := localManifest(d.to)
			if target == "s3" {
				s3env := sinktest.NewS3Bucket(t)
				d = s3Dest(t, srv, s3env, "rebuild")
				folder = bucketManifest(s3env, "rebuild")
			}

			// The first job, whole: a snapshot that records it.
			wantCode(t, runTool(t, d.env, time.Minute, d.pull("--job", strconv.FormatInt(first.Number(), 10))...), 0)
			if _, ok := folder.list(t)["manifest.json"]; !ok {
				t.Fatal("the first pull left no manifest.json")
			}

			// The second job, cut off once a journal records some of it.
			p := startTool(t, d.env, d.pull("--job", strconv.FormatInt(second.Number(), 10))...)
			journaled := p.waitUntil(func() bool { return len(journaledKeys(t, folder.list(t))) > 0 })
			p.cmd.Process.Signal(syscall.SIGKILL)
			p.wait(time.Minute)
			if !journaled {
				t.Fatal("the second pull ended before it wrote a journal")
			}
			files := folder.list(t)
			recorded := journaledKeys(t, files)
			if recorded[key(big.Job().Number(), 0, big.Path())] {
				t.Fatal("the large artifact was recorded before the kill; the test needs it unrecorded")
			}

			// The power cut: the snapshot is left empty.
			folder.write(t, "manifest.json", nil)

			// A dry run says so and writes nothing.
			cut := folder.list(t)
			r := runTool(t, d.env, time.Minute, d.pull("--dry-run")...)
			wantCode(t, r, 0)
			if !strings.Contains(r.stderr, "a pull keeps it aside and rebuilds") {
				t.Errorf("the dry run does not say what a pull will do; stderr:\n%s", r.stderr)
			}
			if after := folder.list(t); !maps.EqualFunc(after, cut, bytes.Equal) {
				t.Errorf("the dry run changed the manifest's files: %q, before %q", slices.Sorted(maps.Keys(after)), slices.Sorted(maps.Keys(cut)))
			}

			srv.ResetStats()
			r = runTool(t, d.env, 2*time.Minute, d.pull()...)
			wantCode(t, r, 0)
			d.check(t, want, true)
			warnings := 0
			for _, line := range strings.Split(r.stderr, "\n") {
				if strings.Contains(line, "manifest") && strings.Contains(line, "could not be read") {
					warnings++
					if !strings.Contains(line, "level=WARN") && !strings.Contains(line, "warning:") {
						t.Errorf("the report is not a warning:\n%s", line)
					}
					for _, s := range []string{"manifest.json could not be read (empty)", "kept it as", "manifest.json.unreadable-",
						fmt.Sprintf("rebuilt %d entries from", len(recorded)), "journal", "artifacts not among them are fetched again"} {
						if !strings.Contains(line, s) {
							t.Errorf("the warning does not say %q:\n%s", s, line)
						}
					}
				}
			}
			if warnings != 1 {
				t.Errorf("%d warnings about the manifest, want 1; stderr:\n%s", warnings, r.stderr)
			}
			for _, a := range arts {
				k := key(a.Job().Number(), int64(a.Node()), a.Path())
				got := srv.Downloads(a).Started
				switch {
				case recorded[k] && got != 0:
					t.Errorf("%s was recorded by a surviving journal but fetched again %d times", k, got)
				case !recorded[k] && got == 0:
					t.Errorf("%s was not recorded anywhere that survived but was not fetched again", k)
				}
			}
			kept := 0
			for name, data := range folder.list(t) {
				if strings.HasPrefix(name, "manifest.json.unreadable-") {
					kept++
					if len(data) != 0 {
						t.Errorf("%s holds %d bytes, want the empty snapshot as it was", name, len(data))
					}
				}
			}
			if kept != 1 {
				t.Errorf("%d copies of the unreadable snapshot kept aside, want 1", kept)
			}
			t.Logf("%d of %d artifacts recorded by the surviving journals; the rebuild fetched %d again",
				len(recorded), len(arts), srv.DownloadTotals().Started)

			wantVerified(t, d, len(arts))
			srv.ResetStats()
			r = runTool(t, d.env, time.Minute, d.pull()...)
			wantCode(t, r, 0)
			if n := srv.DownloadTotals().Started; n != 0 {
				t.Errorf("a pull after the rebuild fetched %d artifacts again", n)
			}
			if strings.Contains(r.stderr, "could not be read") {
				t.Errorf("a pull after the rebuild warns again:\n%s", r.stderr)
			}
		})
	}
}
