package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
)

// TestInterruptedRunCountsWhatItDownloaded: a run interrupted midway
// through a large file says the file is in flight with what is kept for
// the resume, not "not started"; each run's summary counts the bytes that
// run downloaded, never what an earlier run kept, so the runs' bytes add
// up to the file; --json carries the same numbers.
func TestInterruptedRunCountsWhatItDownloaded(t *testing.T) {
	const size = 24 << 20
	w := circlecitest.NewWorld()
	j := w.AddProject(slugArg, "main").AddPipeline("main").AddWorkflow("build").AddJob("build", circlecitest.JobOptions{})
	big := j.AddArtifact(0, "dist/big.bin", size)
	arts := []*circlecitest.Artifact{big}
	for i := range 4 {
		arts = append(arts, j.AddArtifact(0, fmt.Sprintf("logs/%d.log", i), 4<<10))
	}
	srv := circlecitest.Start(t, w, circlecitest.Options{Token: testToken, Bandwidth: 4 << 20})
	d := localDest(t, srv)

	// interrupt runs pull until the large file has been served at least
	// upTo bytes in all, then sends SIGINT.
	interrupt := func(upTo int64, extra ...string) e2eResult {
		t.Helper()
		p := startTool(t, d.env, d.pull(extra...)...)
		if !p.waitUntil(func() bool {
			return srv.Downloads(big).Bytes >= upTo && srv.DownloadTotals().Completed >= len(arts)-1
		}) {
			t.Fatalf("the run ended before the signal:\n%s", p.stderr.String())
		}
		p.cmd.Process.Signal(syscall.SIGINT)
		r := p.wait(30 * time.Second)
		wantCode(t, r, 130)
		return r
	}

	// The first run, for people: the small files, and a third of the
	// large one kept.
	r := interrupt(size / 3)
	m := regexp.MustCompile(`5 artifacts: 4 transferred \(([\d.]+) MiB in .*\), 0 already done, 0 failed, in flight: 1 \(([\d.]+) MiB kept for resume\)\n`).FindStringSubmatch(r.stdout)
	if m == nil || strings.Contains(r.stdout, "not started") {
		t.Fatalf("the summary does not say that the large file is in flight with what is kept:\n%s", r.stdout)
	}
	t.Logf("the first run: %s", strings.TrimSpace(r.stdout))
	downloaded, kept := mib(m[1]), mib(m[2])
	if kept < size/4 || kept > srv.Downloads(big).Bytes {
		t.Errorf("%d bytes kept for resume, with %d of the large file served", kept, srv.Downloads(big).Bytes)
	}
	if offBy(downloaded, kept+4*4<<10) {
		t.Errorf("the first run downloaded %d bytes (the small files and what is kept of the large one), the summary says %d", kept+4*4<<10, downloaded)
	}

	// The second run resumes and is interrupted again, the third
	// finishes: neither counts what the one before it kept.
	type summary struct {
		Transferred, Skipped, InFlight, NotStarted int
		Bytes, KeptBytes                           int64
	}
	parse := func(r e2eResult) summary {
		t.Helper()
		var s struct {
			Transferred *int   `json:"transferred"`
			Skipped     int    `json:"skipped"`
			Bytes       int64  `json:"bytes"`
			InFlight    *int   `json:"in_flight"`
			KeptBytes   *int64 `json:"kept_bytes"`
			NotStarted  int    `json:"not_started"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &s); err != nil || s.Transferred == nil || s.InFlight == nil || s.KeptBytes == nil {
			t.Fatalf("want a JSON summary with in_flight and kept_bytes (%v):\n%s", err, r.stdout)
		}
		return summary{*s.Transferred, s.Skipped, *s.InFlight, s.NotStarted, s.Bytes, *s.KeptBytes}
	}
	second := parse(interrupt(2*size/3, "--json"))
	if second.InFlight != 1 || second.NotStarted != 0 || second.KeptBytes < size/2 || second.Transferred != 0 || second.Skipped != 4 {
		t.Errorf("the second run, interrupted at two thirds: %+v; want the large file in flight, over half of it kept", second)
	}
	if want := second.KeptBytes - kept; second.Bytes != want {
		t.Errorf("the second run says it downloaded %d bytes: want %d, what it added to the %d the first run kept", second.Bytes, want, kept)
	}
	r = runTool(t, d.env, time.Minute, d.pull("--json")...)
	wantCode(t, r, 0)
	third := parse(r)
	if third.Transferred != 1 || third.InFlight != 0 || third.KeptBytes != 0 {
		t.Errorf("the third run: %+v; want the large file transferred", third)
	}
	if want := size - second.KeptBytes; third.Bytes != want {
		t.Errorf("the third run says it downloaded %d bytes: want %d, the rest of the %d-byte file after the %d kept", third.Bytes, want, size, second.KeptBytes)
	}
	t.Logf("the second run: %+v; the third: %+v", second, third)
	d.check(t, mirrorOf(arts...), true)
}

// mib is s MiB as HumanBytes prints it, in bytes.
func mib(s string) int64 {
	f, _ := strconv.ParseFloat(s, 64)
	return int64(f * (1 << 20))
}

// offBy reports whether got is off want by more than HumanBytes rounds.
func offBy(got, want int64) bool {
	return got < want-(64<<10) || got > want+(64<<10)
}
