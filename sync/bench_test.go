package sync_test

// Benchmarks of the engine's hot paths. Their names are stable so that two
// runs compare with benchstat:
//
//	go test -run '^$' -bench . -benchmem -count 10 ./sync >old.txt
//	(change something)
//	go test -run '^$' -bench . -benchmem -count 10 ./sync >new.txt
//	benchstat old.txt new.txt
//
// The transfer benchmarks run the fake CircleCI in the same process, so
// their time and allocations include the server's share; what matters is
// the change between two runs. BenchmarkPullToS3 needs an S3-compatible
// server ($ARTIFACT_SYNC_TEST_S3_ENDPOINT, see sinktest) and skips without
// one. .ci/bench measures the built binary against other tools.

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci"
	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
	"github.com/artifact-sync/artifact-sync/manifest"
	"github.com/artifact-sync/artifact-sync/sink"
	"github.com/artifact-sync/artifact-sync/sink/sinktest"
	ccsync "github.com/artifact-sync/artifact-sync/sync"
)

const benchToken = "cci-sync-bench-token-5a1c"

var benchSlug = circleci.Slug{VCS: "gh", Org: "acme", Repo: "widgets"}

// benchLayouts are the default layout and one that uses every placeholder.
var benchLayouts = []struct{ name, text string }{
	{"default", ccsync.DefaultLayout},
	{"every-placeholder", "{project}/{branch}/{pipeline_number}/{pipeline_id}/{workflow_name}/{workflow_id}/{job_name}/{job_number}/{node_index}/{path}"},
}

// benchPlanArtifacts returns n artifacts shaped like a test job's reports,
// spread over jobs of 1000, with paths as the API returns them.
func benchPlanArtifacts(n int) []*ccsync.Artifact {
	arts := make([]*ccsync.Artifact, n)
	for i := range arts {
		job := int64(1000 + i/1000)
		arts[i] = &ccsync.Artifact{
			Job: ccsync.Job{
				Project: "gh/acme/widgets", Branch: "main", PipelineNumber: 4711,
				PipelineID: "5034460f-c7c4-4c43-9457-de07e2029e7b", WorkflowName: "build-and-test",
				WorkflowID: "fc00a8e5-2d4b-4a3c-9c57-1e1d4c7e2a01", JobName: "test-" + strconv.Itoa(int(job%7)),
				JobNumber: job,
			},
			NodeIndex: int64(i % 4),
			Path:      fmt.Sprintf("reports/junit/shard-%03d/./TEST-com.acme.widgets.Module%04d.xml", i%128, i),
			URL:       "https://output.circle-artifacts.com/output/job/0d6ff0d9/artifacts/0/reports/x.xml",
		}
	}
	return arts
}

// BenchmarkCleanPath checks and cleans one artifact path, as the plan does
// for every artifact before anything is transferred.
func BenchmarkCleanPath(b *testing.B) {
	arts := benchPlanArtifacts(1024)
	i := 0
	for b.Loop() {
		if _, err := ccsync.CleanPath(arts[i%len(arts)].Path); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkLayoutExpand fills in the layout for one artifact.
func BenchmarkLayoutExpand(b *testing.B) {
	arts := benchPlanArtifacts(1024)
	for _, a := range arts {
		a.CleanPath, _ = ccsync.CleanPath(a.Path)
	}
	for _, l := range benchLayouts {
		b.Run(l.name, func(b *testing.B) {
			layout, err := ccsync.ParseLayout(l.text)
			if err != nil {
				b.Fatal(err)
			}
			i := 0
			for b.Loop() {
				if layout.Expand(arts[i%len(arts)]) == "" {
					b.Fatal("empty key")
				}
				i++
			}
		})
	}
}

// BenchmarkPlanKey is the whole per-artifact key work of the plan: clean the
// path, expand the layout, check the key.
func BenchmarkPlanKey(b *testing.B) {
	arts := benchPlanArtifacts(1024)
	for _, l := range benchLayouts {
		b.Run(l.name, func(b *testing.B) {
			layout, err := ccsync.ParseLayout(l.text)
			if err != nil {
				b.Fatal(err)
			}
			i := 0
			for b.Loop() {
				a := arts[i%len(arts)]
				clean, err := ccsync.CleanPath(a.Path)
				if err != nil {
					b.Fatal(err)
				}
				a.CleanPath = clean
				if err := sink.ValidKey(layout.Expand(a)); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// benchFake serves pipeline 1 with jobs jobs of files artifacts of size
// bytes each, and returns a client for it.
func benchFake(b *testing.B, jobs, files int, size int64, opts circlecitest.Options) (*circlecitest.Server, *circleci.Client) {
	b.Helper()
	w := circlecitest.NewWorld()
	wf := w.AddProject("gh/acme/widgets", "main").AddPipeline("main").AddWorkflow("build")
	for j := range jobs {
		job := wf.AddJob("job-"+strconv.Itoa(j), circlecitest.JobOptions{})
		for f := range files {
			job.AddArtifact(0, fmt.Sprintf("out/file-%05d.bin", f), size)
		}
	}
	opts.Token = benchToken
	srv := circlecitest.Start(b, w, opts)
	c, err := circleci.New(circleci.Config{Host: srv.URL, Token: benchToken, MaxConns: 64})
	if err != nil {
		b.Fatal(err)
	}
	return srv, c
}

func benchPullOpts(conc int) ccsync.PullOptions {
	return ccsync.PullOptions{Concurrency: conc, Run: "bench", ToolVersion: "bench", RetryInitial: time.Millisecond, RetryMax: 10 * time.Millisecond}
}

func benchPull(b *testing.B, c *circleci.Client, dest sink.Sink, opts ccsync.PullOptions, want int) {
	b.Helper()
	sum, err := ccsync.Pull(context.Background(), ccsync.LimitAPI(c, 8), c, benchSlug, &ccsync.Selection{PipelineNumber: 1}, dest, opts)
	if err != nil {
		b.Fatal(err)
	}
	if sum.Failed != 0 || sum.Transferred+sum.Skipped != want {
		b.Fatalf("summary: %d transferred, %d skipped, %d failed, want %d: %+v", sum.Transferred, sum.Skipped, sum.Failed, want, sum.Failures)
	}
}

func perArtifact(b *testing.B, n int) {
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/artifact")
}

// BenchmarkPull is the transfer loop: one op lists and transfers every
// artifact of a pipeline of tiny files, into memory (the engine and HTTP
// alone) or into a directory (plus the local sink's temp file, fsync and
// rename).
func BenchmarkPull(b *testing.B) {
	for _, n := range []int{100, 1000} {
		jobs := max(1, n/100)
		srv, c := benchFake(b, jobs, n/jobs, 1024, circlecitest.Options{})
		b.Run(fmt.Sprintf("memory/artifacts=%d", n), func(b *testing.B) {
			b.SetBytes(int64(n) * 1024)
			for b.Loop() {
				benchPull(b, c, sink.NewMemory(), benchPullOpts(8), n)
				srv.ResetStats()
			}
			perArtifact(b, n)
		})
		b.Run(fmt.Sprintf("dir/artifacts=%d", n), func(b *testing.B) {
			b.SetBytes(int64(n) * 1024)
			root := b.TempDir()
			i := 0
			for b.Loop() {
				dest, err := sink.NewLocal(filepath.Join(root, strconv.Itoa(i)))
				if err != nil {
					b.Fatal(err)
				}
				benchPull(b, c, dest, benchPullOpts(8), n)
				srv.ResetStats()
				i++
			}
			perArtifact(b, n)
		})
	}
}

// BenchmarkRerun is a run that finds everything done: resolve, list, load
// the manifest and plan, transfer nothing.
func BenchmarkRerun(b *testing.B) {
	const n = 10000
	srv, c := benchFake(b, 10, n/10, 16, circlecitest.Options{})
	for _, kind := range []string{"memory", "dir"} {
		b.Run(fmt.Sprintf("%s/artifacts=%d", kind, n), func(b *testing.B) {
			var dest sink.Sink = sink.NewMemory()
			opts := benchPullOpts(8)
			if kind == "dir" {
				// The artifacts in memory, the manifest on disk: what a
				// rerun reads.
				opts.Manifest = manifest.DirStore{Dir: b.TempDir()}
			}
			benchPull(b, c, dest, opts, n)
			for b.Loop() {
				benchPull(b, c, dest, opts, n)
				srv.ResetStats()
			}
			perArtifact(b, n)
		})
	}
}

// BenchmarkCollect lists a pipeline of 64 jobs with 5 ms on every request
// under several API concurrency limits (main uses LimitAPI(client, 8)).
func BenchmarkCollect(b *testing.B) {
	const jobs, files = 64, 10
	srv, c := benchFake(b, jobs, files, 16, circlecitest.Options{Latency: 5 * time.Millisecond})
	for _, limit := range []int{4, 8, 16, 32} {
		b.Run(fmt.Sprintf("limit=%d", limit), func(b *testing.B) {
			api := ccsync.LimitAPI(c, limit)
			for b.Loop() {
				n := 0
				if _, err := ccsync.Collect(context.Background(), api, benchSlug, &ccsync.Selection{PipelineNumber: 1}, nil, func(ccsync.Artifact) { n++ }); err != nil {
					b.Fatal(err)
				}
				if n != jobs*files {
					b.Fatalf("collected %d artifacts, want %d", n, jobs*files)
				}
				srv.ResetStats()
			}
		})
	}
}

// BenchmarkPullLarge moves one 256 MiB artifact into a directory over one
// connection and over several in ranges: the path whose CPU profile
// (-cpuprofile) shows what large files cost (SHA-256, copies, syscalls).
func BenchmarkPullLarge(b *testing.B) {
	const size = 256 << 20
	srv, c := benchFake(b, 1, 1, size, circlecitest.Options{})
	for _, streams := range []int{1, 8} {
		b.Run(fmt.Sprintf("streams=%d", streams), func(b *testing.B) {
			b.SetBytes(size)
			root := b.TempDir()
			opts := benchPullOpts(8)
			opts.MultiThreadStreams = streams
			i := 0
			for b.Loop() {
				dir := filepath.Join(root, strconv.Itoa(i))
				dest, err := sink.NewLocal(dir)
				if err != nil {
					b.Fatal(err)
				}
				benchPull(b, c, dest, opts, 1)
				srv.ResetStats()
				b.StopTimer()
				os.RemoveAll(dir)
				b.StartTimer()
				i++
			}
		})
	}
}

// BenchmarkPullToS3 streams one 128 MiB artifact straight into S3 under
// several multipart part sizes and part concurrencies.
func BenchmarkPullToS3(b *testing.B) {
	const size = 128 << 20
	env := sinktest.NewS3Bucket(b)
	srv, c := benchFake(b, 1, 1, size, circlecitest.Options{})
	for _, part := range []int64{5 << 20, 8 << 20, 16 << 20, 32 << 20} {
		for _, conc := range []int{4, 8} {
			b.Run(fmt.Sprintf("part=%dMiB/concurrency=%d", part>>20, conc), func(b *testing.B) {
				b.SetBytes(size)
				cfg := env.Config(fmt.Sprintf("part-%d-%d", part>>20, conc))
				cfg.PartSize, cfg.Concurrency = part, conc
				dest, err := sink.NewS3(context.Background(), cfg)
				if err != nil {
					b.Fatal(err)
				}
				opts := benchPullOpts(8)
				opts.Force = true
				for b.Loop() {
					benchPull(b, c, dest, opts, 1)
					srv.ResetStats()
				}
			})
		}
	}
}

// BenchmarkPullRangedShared moves three 256 MiB artifacts from a server
// that gives each connection 2 MiB/s, with 16 streams a file and 16 extra
// ones in all: once a file is done its streams go to the others, so the
// set takes about what its bytes take at the server's rate for every
// connection (x-ideal: the time over 768 MiB at 16 connections, 32 MiB/s).
// served-x is the bytes the server sent over the bytes of the files.
func BenchmarkPullRangedShared(b *testing.B) {
	const size, rate = 256 << 20, 2 << 20
	srv, c := benchFake(b, 1, 3, size, circlecitest.Options{Bandwidth: rate})
	b.SetBytes(3 * size)
	root := b.TempDir()
	opts := benchPullOpts(16)
	opts.MultiThreadStreams = 16
	i := 0
	var served int64
	for b.Loop() {
		dir := filepath.Join(root, strconv.Itoa(i))
		dest, err := sink.NewLocal(dir)
		if err != nil {
			b.Fatal(err)
		}
		benchPull(b, c, dest, opts, 3)
		served += srv.BytesServed()
		srv.ResetStats()
		b.StopTimer()
		os.RemoveAll(dir)
		b.StartTimer()
		i++
	}
	ideal := float64(3*size) / float64(16*rate)
	b.ReportMetric(b.Elapsed().Seconds()/float64(i)/ideal, "x-ideal")
	b.ReportMetric(float64(served)/float64(i)/float64(3*size), "served-x")
}

// BenchmarkPullRangedLatency moves two 100 MiB artifacts over connections
// that delay what they receive by 50 or 200 ms (± half), with 4 MiB in
// flight, over one stream and the default streams: splitting must cost
// neither time nor bytes (served-x, the bytes the server sent over the
// bytes of the files).
func BenchmarkPullRangedLatency(b *testing.B) {
	const size = 100 << 20
	for _, latency := range []time.Duration{50 * time.Millisecond, 200 * time.Millisecond} {
		for _, streams := range []int{1, ccsync.DefaultMultiThreadStreams} {
			b.Run(fmt.Sprintf("latency=%v/streams=%d", latency, streams), func(b *testing.B) {
				srv, _ := benchFake(b, 1, 2, size, circlecitest.Options{})
				tr := http.DefaultTransport.(*http.Transport).Clone()
				tr.DialContext = delayDialer(latency, latency/2, 4<<20)
				tr.MaxIdleConnsPerHost = 64
				c, err := circleci.New(circleci.Config{Host: srv.URL, Token: benchToken, HTTPClient: &http.Client{Transport: tr}})
				if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(2 * size)
				root := b.TempDir()
				opts := benchPullOpts(16)
				opts.MultiThreadStreams = streams
				i := 0
				var served int64
				for b.Loop() {
					dir := filepath.Join(root, strconv.Itoa(i))
					dest, err := sink.NewLocal(dir)
					if err != nil {
						b.Fatal(err)
					}
					benchPull(b, c, dest, opts, 2)
					served += srv.BytesServed()
					srv.ResetStats()
					b.StopTimer()
					os.RemoveAll(dir)
					b.StartTimer()
					i++
				}
				b.ReportMetric(float64(served)/float64(i)/float64(2*size), "served-x")
			})
		}
	}
}
