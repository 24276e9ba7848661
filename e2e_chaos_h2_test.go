package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
)

// chaosH2TrialsEnv sets the number of trials of TestChaosHTTP2 (default
// chaosH2DefaultTrials); chaosSeedEnv sets the first seed, as for TestChaos.
const chaosH2TrialsEnv = "ARTIFACT_SYNC_CHAOS_H2_TRIALS"

// chaosH2DefaultTrials is what CI runs: each trial is one run of the tool
// through the faults and a few quick ones after it.
const chaosH2DefaultTrials = 3

// TestChaosHTTP2 is TestChaos over HTTPS with HTTP/2, what CDNs and object
// stores speak, where one connection carries every transfer to a host: each
// seed picks a world, the server's latency and bandwidth, the tool's -j,
// streams and cutoff and the transient per-request faults as TestChaos does,
// and adds faults of the connections themselves, as a TCP fault proxy in
// front of the download host makes them: every connection is reset once it
// has carried 1 to 4 MiB, and a few bursts of resets drop every open
// connection and refuse new ones with RST for a moment. No interrupt, no
// permanent failure: the first run must transfer every artifact byte-exact
// and exit 0, within the same bytes bound as TestChaos (a cut answer may
// lose what a cut download may) and 1.3 times the artifacts' bytes in all,
// then verify passes and one more run transfers nothing. ARTIFACT_SYNC_CHAOS_H2_TRIALS=50 runs more trials.
func TestChaosHTTP2(t *testing.T) {
	trials := chaosH2DefaultTrials
	if s := os.Getenv(chaosH2TrialsEnv); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("$%s=%q: give a number of trials", chaosH2TrialsEnv, s)
		}
		trials = n
	}
	first := uint64(time.Now().UnixNano() % 1e6)
	if s := os.Getenv(chaosSeedEnv); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("$%s=%q: give a number", chaosSeedEnv, s)
		}
		first = n
	}
	t.Logf("seeds %d to %d (%s=%d %s=%d)", first, first+uint64(trials)-1, chaosSeedEnv, first, chaosH2TrialsEnv, trials)
	for i := range uint64(trials) {
		seed := first + i
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			tr := newChaosTrial(seed)
			tr.s3 = false // a directory: S3 uploads restart parts, a looser bound
			tr.moments, tr.force, tr.remove = nil, false, false
			tr.listFail, tr.deny = false, false
			tr.cutEvery = 0 // the connections are cut instead
			r := rand.New(rand.NewPCG(seed, 0x6832))
			tr.h2 = &chaosH2{cutEvery: int64(1024+r.IntN(3*1024)) << 10, bursts: 1 + r.IntN(3), r: r}
			defer func() {
				if t.Failed() {
					t.Logf("trial: %s\nreplay: %s=%d %s=1 go test -run 'TestChaosHTTP2/seed=%d$' .", tr, chaosSeedEnv, seed, chaosH2TrialsEnv, seed)
				}
			}()
			tr.run(t, nil)
		})
	}
}

// chaosH2Bytes bounds the bytes served over a TestChaosHTTP2 trial, as a
// multiple of the artifacts' bytes, besides the bound per artifact: each cut
// or burst loses at most what the transfers then in flight had not kept.
const chaosH2Bytes = 1.3

// chaosH2 is what a TestChaosHTTP2 seed adds to a trial.
type chaosH2 struct {
	cutEvery int64 // bytes a connection to the download host carries before it is reset
	bursts   int   // bursts of resets in the run with faults
	r        *rand.Rand
}

func (h *chaosH2) String() string {
	if h == nil {
		return ""
	}
	return fmt.Sprintf("; over HTTP/2, connections cut every %d KiB, %d bursts of resets", h.cutEvery>>10, h.bursts)
}

// faults turns the connection faults on for the run p, if on, and returns
// what turns them off once it has ended. The bursts come at random moments
// of its first seconds (the first after its first byte), each resetting the
// download host's connections and refusing new ones with RST for 50 to
// 300 ms.
func (h *chaosH2) faults(srv *circlecitest.Server, on bool, p *proc) (stop func()) {
	if h == nil || !on {
		return func() {}
	}
	host := circlecitest.HostArtifacts
	if srv.StorageURL != "" {
		host = circlecitest.HostStorage
	}
	srv.CutConnections(host, h.cutEvery)
	type burst struct{ at, d time.Duration }
	var bursts []burst
	for range h.bursts {
		bursts = append(bursts, burst{time.Duration(h.r.IntN(3000)) * time.Millisecond, time.Duration(50+h.r.IntN(250)) * time.Millisecond})
	}
	done := make(chan struct{})
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		for srv.BytesServed() == 0 {
			select {
			case <-done:
				return
			case <-p.done:
				return
			case <-time.After(time.Millisecond):
			}
		}
		start := time.Now()
		for _, b := range bursts {
			select {
			case <-done:
				return
			case <-p.done:
				return
			case <-time.After(time.Until(start.Add(b.at))):
			}
			srv.Outage(host, circlecitest.OutageReset, b.d)
		}
	}()
	return func() {
		close(done)
		<-ended
		srv.CutConnections(host, 0)
	}
}

// trustFake adds to env what makes the tool trust srv's certificate, and
// nothing else: SSL_CERT_FILE naming it.
func trustFake(t *testing.T, env []string, srv *circlecitest.Server) []string {
	t.Helper()
	certFile := filepath.Join(t.TempDir(), "fake.pem")
	if err := os.WriteFile(certFile, srv.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	return append(env[:len(env):len(env)], "SSL_CERT_FILE="+certFile)
}
