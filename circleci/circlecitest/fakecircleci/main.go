// Command fakecircleci serves a fake CircleCI on loopback, for trying
// artifact-sync without a CircleCI account and for benchmarks.
//
// It builds a project gh/acme/widgets whose default branch main has
// -pipelines pipelines, each with one workflow "build" of -jobs jobs with
// -files artifacts of -size bytes, prints the environment a client needs
// (CIRCLECI_HOST, CIRCLE_TOKEN) and serves until interrupted.
//
// Given a command after the flags, it runs that command with the environment
// set instead, and exits with its status:
//
//	go run ./circleci/circlecitest/fakecircleci -- go run . pull gh/acme/widgets --to ./artifacts
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
)

func main() {
	pipelines := flag.Int("pipelines", 1, "pipelines on main")
	jobs := flag.Int("jobs", 3, "jobs per pipeline")
	files := flag.Int("files", 5, "artifacts per job")
	size := flag.Int64("size", 16<<10, "bytes per artifact")
	big := flag.Int("big", 0, "extra artifacts of -big-size bytes in the first job")
	bigSize := flag.Int64("big-size", 1<<30, "bytes per big artifact")
	parallel := flag.Int("parallelism", 1, "nodes per job (each node has its own copy of the files)")
	latency := flag.Duration("latency", 0, "added to every request")
	bandwidth := flag.Int64("bandwidth", 0, "bytes per second per download connection (0: unlimited)")
	redirect := flag.Bool("redirect", false, "redirect downloads to a third, presigned-storage host")
	noRange := flag.Bool("no-range", false, "ignore Range requests")
	pageSize := flag.Int("page-size", 0, "items per list page (0: 20 for pipelines, workflows and jobs, all artifacts of a job in one page)")
	token := flag.String("token", "fake-token", "the token the server accepts")
	flag.Parse()

	w := circlecitest.NewWorld()
	p := w.AddProject("gh/acme/widgets", "main")
	for range *pipelines {
		wf := p.AddPipeline("main").AddWorkflow("build")
		for j := range *jobs {
			job := wf.AddJob("job-"+strconv.Itoa(j), circlecitest.JobOptions{Parallelism: *parallel})
			for node := range *parallel {
				for f := range *files {
					job.AddArtifact(node, fmt.Sprintf("out/file-%04d.bin", f), *size)
				}
				if j == 0 && node == 0 {
					for b := range *big {
						job.AddArtifact(0, fmt.Sprintf("big/big-%d.bin", b), *bigSize)
					}
				}
			}
		}
	}
	srv, err := circlecitest.NewServer(w, circlecitest.Options{
		Token: *token, Latency: *latency, Bandwidth: *bandwidth, Redirect: *redirect, NoRange: *noRange,
		PageSize: *pageSize,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakecircleci:", err)
		os.Exit(1)
	}
	defer srv.Close()
	if args := flag.Args(); len(args) > 0 {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		cmd.Env = append(os.Environ(), "CIRCLECI_HOST="+srv.URL, "CIRCLE_TOKEN="+*token)
		fmt.Fprintf(os.Stderr, "fake CircleCI at %s serving gh/acme/widgets\n", srv.URL)
		err := cmd.Run()
		srv.Close()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			os.Exit(ee.ExitCode())
		case err != nil:
			fmt.Fprintln(os.Stderr, "fakecircleci:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	fmt.Printf("export CIRCLECI_HOST=%s CIRCLE_TOKEN=%s\n", srv.URL, *token)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
}
