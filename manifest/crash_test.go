package manifest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	crashDirEnv = "ARTIFACT_SYNC_MANIFEST_CRASH_DIR"
	crashRunEnv = "ARTIFACT_SYNC_MANIFEST_CRASH_RUN"
	crashDest   = "/crash/dest"
)

// crashOptions flush and compact often, so that kills land in every phase.
func crashOptions(run string) Options {
	return Options{
		Destination:   crashDest,
		ToolVersion:   "artifact-sync crash test",
		Run:           run,
		FlushInterval: 10 * time.Millisecond,
		FlushEntries:  64,
		MaxJournals:   4,
	}
}

// reportingStore prints the path of every entry in a journal once the
// journal is durable, so the parent knows what must survive a kill.
type reportingStore struct {
	DirStore
}

func (r reportingStore) WriteFile(ctx context.Context, name string, data []byte) error {
	if err := r.DirStore.WriteFile(ctx, name, data); err != nil {
		return err
	}
	if _, _, ok := parseJournalName(name); !ok {
		return nil
	}
	_, recs, err := decodeJournal(name, data, crashDest)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	for _, rec := range recs {
		var i int
		if _, err := fmt.Sscanf(rec.Path, "dist/"+rec.Run+"/file-%d.tgz", &i); err != nil {
			return err
		}
		fmt.Fprintf(&buf, "durable %s %d\n", rec.Run, i)
	}
	_, err = os.Stdout.Write(buf.Bytes())
	return err
}

// TestHelperProcess is the child of TestCrash: it records entries until it
// is killed.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("run by TestCrash")
	}
	run := os.Getenv(crashRunEnv)
	m, err := Open(context.Background(), reportingStore{DirStore{Dir: dir}}, crashOptions(run))
	if err != nil {
		fmt.Fprintf(os.Stderr, "open: %v\n", err)
		os.Exit(3)
	}
	fmt.Println("ready")
	for i := 0; ; i++ {
		if err := m.Record(testEntry(run, i)); err != nil {
			fmt.Fprintf(os.Stderr, "record: %v\n", err)
			os.Exit(4)
		}
		if i%10 == 9 {
			time.Sleep(100 * time.Microsecond)
		}
	}
}

// TestCrash kills a process that is recording at many different instants,
// always in the same directory, and checks after each kill that the
// manifest loads and holds every entry the child saw written.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	durable := make(map[string]Entry) // by path
	const kills = 16
	for i := range kills {
		run := fmt.Sprintf("crash%02d", i)
		var stdout readyWriter
		stdout.ready = make(chan struct{})
		var stderr bytes.Buffer
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashRunEnv+"="+run)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// The first kills land while the child starts and loads; the rest
		// while it records, flushes and compacts, spread over 3ms to 250ms.
		var delay time.Duration
		if i < 3 {
			delay = time.Duration(1+i*20) * time.Millisecond
		} else {
			select {
			case <-stdout.ready:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("kill %d: child never got ready:\n%s", i, stderr.Bytes())
			}
			delay = time.Duration(3+(i-3)*19) * time.Millisecond
		}
		time.Sleep(delay)
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		if cmd.ProcessState.ExitCode() != -1 { // -1: killed by a signal
			t.Fatalf("kill %d: child exited by itself (%v):\n%s", i, err, stderr.Bytes())
		}

		// A line cut short by the kill was never complete, so never a claim.
		out := stdout.buf.Bytes()
		out = out[:bytes.LastIndexByte(out, '\n')+1]
		n := 0
		for line := range strings.Lines(string(out)) {
			var r string
			var j int
			if _, err := fmt.Sscanf(line, "durable %s %d\n", &r, &j); err != nil {
				continue
			}
			e := testEntry(r, j)
			durable[e.Path] = e
			n++
		}

		m, err := Open(t.Context(), DirStore{Dir: dir}, crashOptions("checker"))
		if err != nil {
			t.Fatalf("kill %d after %v: manifest does not load: %v", i, delay, err)
		}
		missing := 0
		for _, want := range durable {
			got, ok := m.Lookup(want.ID)
			if !ok || !sameEntry(got, want) {
				missing++
				if missing <= 3 {
					t.Errorf("kill %d after %v: %v reported durable but %s", i, delay, want.ID, map[bool]string{false: "missing", true: "different"}[ok])
				}
			}
		}
		t.Logf("kill %d after %v: %d newly durable, %d in all, %d loaded", i, delay, n, len(durable), m.Len())
		// Every third time, compact as the next run would.
		if i%3 == 2 {
			marker := testEntry("checker", i)
			durable[marker.Path] = marker
			mustRecord(t, m, marker)
		}
		mustClose(t, m)
	}
}

// readyWriter collects a child's output and closes ready when the child
// says it has opened the manifest.
type readyWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	ready chan struct{}
}

func (w *readyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	wasReady := bytes.HasPrefix(w.buf.Bytes(), []byte("ready\n"))
	w.buf.Write(p)
	if !wasReady && bytes.HasPrefix(w.buf.Bytes(), []byte("ready\n")) {
		close(w.ready)
	}
	return len(p), nil
}
