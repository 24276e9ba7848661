// Command fakecircleci serves a fake CircleCI on loopback, for trying
// artifact-sync without a CircleCI account and for benchmarks.
//
// It builds a project gh/acme/widgets whose default branch main has
// -pipelines pipelines, each with -workflows workflows ("build", then
// "build-2", ...) of -jobs jobs with -files artifacts of -size bytes (with
// -days and -branches, spread over the days before now on several
// branches), prints the environment a client needs (CIRCLECI_HOST,
// CIRCLE_TOKEN) and serves until interrupted.
//
// Given a command after the flags, it runs that command with the environment
// set instead, and exits with its status:
//
//	go run ./circleci/circlecitest/fakecircleci -- go run . pull gh/acme/widgets --to ./artifacts
//
// With -tls every host speaks HTTPS, HTTP/2 where the client offers it (but
// the hosts -http1 names), with a certificate made at start and written to
// -cert (by default a file removed at exit). The environment then also sets
// SSL_CERT_FILE to that file, which Go programs and curl on Linux trust in
// place of the system's roots: no flag turns verification off.
//
// With -rate-limit N the API lets through N requests per second (a token
// bucket holding one second's budget) and answers the rest 429, with or
// without Retry-After, in JSON or plain text, with rate-limit headers or
// without, as the -rate-limit-* flags say; the stats count those 429s.
//
// FAKECIRCLECI_STATS, also in the environment, is the URL of a control
// endpoint on its own listener (not one of the fake's hosts): GET
// FAKECIRCLECI_STATS/stats answers what the hosts saw since the last POST
// FAKECIRCLECI_STATS/reset, as JSON: connections accepted and connections
// that carried requests, per host; requests per route and per protocol; and
// the times (Unix nanoseconds) of the first artifact download request
// received and of the first artifact list answered, for benchmarks that
// measure time to first byte. POST FAKECIRCLECI_STATS/pipelines?n=N adds N
// pipelines of the same shape, and POST FAKECIRCLECI_STATS/rerun?pipeline=K
// a workflow to pipeline number K (as rerunning a workflow does), for
// benchmarks of nightly runs.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
)

func main() { os.Exit(run()) }

// usage is what -h prints: both ways to run the fake, then the flags.
func usage() {
	w := flag.CommandLine.Output()
	fmt.Fprint(w, `fakecircleci serves a fake CircleCI (project gh/acme/widgets) on loopback.

Usage:
  fakecircleci [flags]                  serve, print the environment a client needs
                                        (CIRCLECI_HOST, CIRCLE_TOKEN, ...), until interrupted
  fakecircleci [flags] -- COMMAND ARGS  run COMMAND with that environment set, then stop,
                                        exiting with COMMAND's status

Example:
  go run ./circleci/circlecitest/fakecircleci -- go run . pull gh/acme/widgets --to ./artifacts

Flags:
`)
	flag.PrintDefaults()
}

func run() int {
	pipelines := flag.Int("pipelines", 1, "pipelines (on main, or on -branches branches)")
	jobs := flag.Int("jobs", 3, "jobs per workflow")
	workflows := flag.Int("workflows", 1, "workflows per pipeline")
	files := flag.Int("files", 5, "artifacts per job")
	size := flag.Int64("size", 16<<10, "bytes per artifact")
	big := flag.Int("big", 0, "extra artifacts of -big-size bytes in the first job")
	bigSize := flag.Int64("big-size", 1<<30, "bytes per big artifact")
	parallel := flag.Int("parallelism", 1, "nodes per job (each node has its own copy of the files)")
	latency := flag.Duration("latency", 0, "added to every request")
	jitter := flag.Duration("jitter", 0, "spreads -latency: each request waits it plus a uniform draw from [-jitter, +jitter]")
	bandwidth := flag.Int64("bandwidth", 0, "bytes per second per download connection (0: unlimited)")
	redirect := flag.Bool("redirect", false, "redirect downloads to a third, presigned-storage host")
	noRange := flag.Bool("no-range", false, "ignore Range requests")
	pageSize := flag.Int("page-size", 0, "items per list page (0: 20 for pipelines, workflows and jobs, all artifacts of a job in one page)")
	token := flag.String("token", "fake-token", "the token the server accepts")
	useTLS := flag.Bool("tls", false, "serve every host over HTTPS, with HTTP/2 for clients that offer it, and set SSL_CERT_FILE to the certificate")
	http1 := flag.String("http1", "", "with -tls, comma-separated hosts that speak only HTTP/1.1 (api, artifacts, storage; S3 does so for presigned storage)")
	certFile := flag.String("cert", "", "with -tls, write the certificate (PEM) to this file (default: a temporary file removed at exit)")
	win := windowFlags(flag.CommandLine)
	rl := rateLimitFlags()
	flag.Usage = usage
	flag.Parse()
	limit, err := rl()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakecircleci:", err)
		return 2
	}

	w := circlecitest.NewWorld()
	sh := &shape{p: w.AddProject("gh/acme/widgets", "main"), workflows: *workflows, jobs: *jobs, files: *files,
		size: *size, big: *big, bigSize: *bigSize, parallel: *parallel}
	sh.addPipelines(*pipelines, func(i int) string { return win.place(w, i, *pipelines) })
	opts := circlecitest.Options{
		Token: *token, Latency: *latency, Jitter: *jitter, Bandwidth: *bandwidth, Redirect: *redirect, NoRange: *noRange,
		PageSize: *pageSize, TLS: *useTLS, RateLimit: limit,
	}
	if *http1 != "" {
		if !*useTLS {
			fmt.Fprintln(os.Stderr, "fakecircleci: -http1 needs -tls (without it every host speaks HTTP/1.1)")
			return 2
		}
		opts.HTTP1 = strings.Split(*http1, ",")
	}
	srv, err := circlecitest.NewServer(w, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakecircleci:", err)
		return 1
	}
	defer srv.Close()

	env := []string{"CIRCLECI_HOST=" + srv.URL, "CIRCLE_TOKEN=" + *token}
	if *useTLS {
		path := *certFile
		if path == "" {
			dir, err := os.MkdirTemp("", "fakecircleci-")
			if err != nil {
				fmt.Fprintln(os.Stderr, "fakecircleci:", err)
				return 1
			}
			defer os.RemoveAll(dir)
			path = filepath.Join(dir, "cert.pem")
		}
		if path, err = filepath.Abs(path); err == nil {
			err = os.WriteFile(path, srv.CertPEM(), 0o644)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "fakecircleci: writing the certificate:", err)
			return 1
		}
		env = append(env, "SSL_CERT_FILE="+path)
	}
	stats, err := serveStats(srv, sh)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakecircleci:", err)
		return 1
	}
	defer stats.Close()
	env = append(env, "FAKECIRCLECI_STATS=http://"+stats.Addr)

	if args := flag.Args(); len(args) > 0 {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		cmd.Env = append(os.Environ(), env...)
		fmt.Fprintf(os.Stderr, "fake CircleCI at %s serving gh/acme/widgets\n", srv.URL)
		err := cmd.Run()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			return ee.ExitCode()
		case err != nil:
			fmt.Fprintln(os.Stderr, "fakecircleci:", err)
			return 1
		}
		return 0
	}
	fmt.Printf("export %s\n", strings.Join(env, " "))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return 0
}

// hosts are the fake's hosts, in the order the stats list them.
var hosts = []string{circlecitest.HostAPI, circlecitest.HostArtifacts, circlecitest.HostStorage}

// statsJSON is the answer of GET /stats.
type statsJSON struct {
	// Connections counts the TCP connections each host accepted;
	// ConnectionsUsed those that carried at least one request.
	Connections     map[string]int `json:"connections"`
	ConnectionsUsed map[string]int `json:"connections_used"`
	// Requests counts requests per route (see circlecitest.Server.Requests).
	Requests map[string]int `json:"requests"`
	// Protocols counts requests per host and protocol ("HTTP/2.0").
	Protocols map[string]map[string]int `json:"protocols"`
	// FirstDownload is when the first request reached the artifact host;
	// FirstArtifactList when the first artifact list was answered. Unix
	// nanoseconds, 0 if there was none.
	FirstDownload     int64 `json:"first_download"`
	FirstArtifactList int64 `json:"first_artifact_list"`
	// FirstRequest is when the first request of any route reached a host,
	// LastAnswer when the last status line was sent: what a client spent
	// before and after them is its own (start-up, finishing).
	FirstRequest int64 `json:"first_request"`
	LastAnswer   int64 `json:"last_answer"`
	// Bytes counts the artifact bytes served.
	Bytes int64 `json:"bytes"`
	// RateLimited counts the 429s of -rate-limit.
	RateLimited int `json:"rate_limited"`
}

func collectStats(srv *circlecitest.Server) statsJSON {
	st := statsJSON{
		Connections:     make(map[string]int),
		ConnectionsUsed: make(map[string]int),
		Requests:        srv.RequestCounts(),
		Protocols:       make(map[string]map[string]int),
		Bytes:           srv.BytesServed(),
		RateLimited:     srv.RateLimited(),
	}
	for _, h := range hosts {
		st.Connections[h] = srv.Connections(h)
		st.ConnectionsUsed[h] = srv.ConnectionsUsed(h)
	}
	first := func(t *int64, ns int64) {
		if ns > 0 && (*t == 0 || ns < *t) {
			*t = ns
		}
	}
	for _, lr := range srv.RequestLog() {
		if st.Protocols[lr.Host] == nil {
			st.Protocols[lr.Host] = make(map[string]int)
		}
		st.Protocols[lr.Host][lr.Proto]++
		first(&st.FirstRequest, lr.Received.UnixNano())
		if !lr.Answered.IsZero() {
			st.LastAnswer = max(st.LastAnswer, lr.Answered.UnixNano())
		}
		switch {
		case lr.Host == circlecitest.HostArtifacts && lr.Route == "download":
			first(&st.FirstDownload, lr.Received.UnixNano())
		case lr.Host == circlecitest.HostAPI && lr.Route == "artifacts" && lr.Status == http.StatusOK:
			first(&st.FirstArtifactList, lr.Answered.UnixNano())
		}
	}
	return st
}

// statsServer is the control endpoint.
type statsServer struct {
	Addr string
	srv  *http.Server
}

func (s *statsServer) Close() { s.srv.Close() }

func serveStats(srv *circlecitest.Server, sh *shape) (*statsServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(collectStats(srv))
	})
	mux.HandleFunc("POST /reset", func(w http.ResponseWriter, r *http.Request) {
		srv.ResetStats()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /pipelines", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.URL.Query().Get("n"))
		if err != nil || n < 1 {
			http.Error(w, "give n, a number of pipelines to add", http.StatusBadRequest)
			return
		}
		sh.addPipelines(n, func(int) string { return "main" })
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /rerun", func(w http.ResponseWriter, r *http.Request) {
		k, err := strconv.ParseInt(r.URL.Query().Get("pipeline"), 10, 64)
		pls := sh.p.Pipelines()
		if err != nil || k < 1 || k > int64(len(pls)) {
			http.Error(w, "give pipeline, the number of a pipeline of the project", http.StatusBadRequest)
			return
		}
		sh.addWorkflow(pls[k-1], "build")
		w.WriteHeader(http.StatusNoContent)
	})
	s := &statsServer{Addr: ln.Addr().String(), srv: &http.Server{Handler: mux}}
	go s.srv.Serve(ln)
	return s, nil
}

// shape is what every pipeline of the fake's project holds.
type shape struct {
	p                      *circlecitest.Project
	workflows, jobs, files int
	size, bigSize          int64
	big, parallel          int
	mu                     sync.Mutex // one addition at a time
}

// addPipelines adds n pipelines, pipeline i on branch(i).
func (sh *shape) addPipelines(n int, branch func(i int) string) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for i := range n {
		pl := sh.p.AddPipeline(branch(i))
		for i := range sh.workflows {
			name := "build"
			if i > 0 {
				name += "-" + strconv.Itoa(i+1)
			}
			sh.addWorkflow(pl, name)
		}
	}
}

func (sh *shape) addWorkflow(pl *circlecitest.Pipeline, name string) {
	wf := pl.AddWorkflow(name)
	for j := range sh.jobs {
		job := wf.AddJob("job-"+strconv.Itoa(j), circlecitest.JobOptions{Parallelism: sh.parallel})
		for node := range sh.parallel {
			for f := range sh.files {
				job.AddArtifact(node, fmt.Sprintf("out/file-%04d.bin", f), sh.size)
			}
			if j == 0 && node == 0 {
				for b := range sh.big {
					job.AddArtifact(0, fmt.Sprintf("big/big-%d.bin", b), sh.bigSize)
				}
			}
		}
	}
}
