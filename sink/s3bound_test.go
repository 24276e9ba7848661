package sink_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/artifact-sync/artifact-sync/sink"
)

// endlessS3 is an S3 endpoint on loopback that answers a listing with 200
// and a page that never ends, and a PUT with 400 and an error document
// that never ends (up to 128 MiB, past any bound the client should keep).
// It notes the most bytes it managed to send in one answer, and counts the
// requests of each kind.
type endlessS3 struct {
	*httptest.Server
	most           atomic.Int64 // the most bytes one answer carried
	lists, uploads atomic.Int32 // ListObjectsV2 and PUT requests
}

func startEndlessS3(t *testing.T) *endlessS3 {
	t.Helper()
	e := &endlessS3{}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var head, item string
		switch {
		case r.Method == http.MethodGet && r.URL.Query().Get("list-type") == "2":
			e.lists.Add(1)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusOK)
			head = `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>b</Name><IsTruncated>false</IsTruncated>`
			item = "<Contents><Key>" + strings.Repeat("k", 1000) + "</Key><Size>1</Size></Contents>"
		case r.Method == http.MethodPut:
			e.uploads.Add(1)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusBadRequest)
			head = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidRequest</Code><Message>`
			item = strings.Repeat("no ", 1000)
		default:
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>none</Message></Error>`))
			return
		}
		n, err := w.Write([]byte(head))
		sent := int64(n)
		for err == nil && sent < 128<<20 {
			n, err = w.Write([]byte(item))
			sent += int64(n)
		}
		for m := e.most.Load(); sent > m && !e.most.CompareAndSwap(m, sent); m = e.most.Load() {
		}
	}))
	t.Cleanup(e.Close)
	return e
}

// An S3 server whose answers never end costs a bounded read, not all the
// memory there is: a listing page and an error document are read up to
// 32 MiB, then the operation fails once, permanently, with a sentence
// that says what is wrong.
func TestS3AnswersAreReadThroughABound(t *testing.T) {
	for _, op := range []string{"list", "put"} {
		t.Run(op, func(t *testing.T) {
			e := startEndlessS3(t)
			s, err := sink.NewS3(t.Context(), sink.S3Config{Bucket: "b", Endpoint: e.URL, PathStyle: true, Region: "us-east-1",
				AccessKeyID: "k", SecretAccessKey: "secret"})
			if err != nil {
				t.Fatal(err)
			}
			var got error
			if op == "list" {
				for _, err := range s.List(t.Context(), "") {
					if err != nil {
						got = err
						break
					}
				}
			} else {
				_, got = s.Put(t.Context(), "k", strings.NewReader("hello"), sink.PutOptions{Size: 5})
			}
			e.Close() // waits for the handler to give up writing
			sent := e.most.Load()
			t.Logf("sent %d MiB; error: %v", sent>>20, got)
			if got == nil {
				t.Fatal("an answer that never ends was taken")
			}
			if sent > 64<<20 {
				t.Errorf("the client read %d MiB of one answer", sent>>20)
			}
			if !strings.Contains(got.Error(), "more than 32 MiB") || !sink.IsPermanent(got) {
				t.Errorf("error %q (permanent: %v): want a permanent one naming the bound", got, sink.IsPermanent(got))
			}
			n := e.lists.Load()
			if op == "put" {
				n = e.uploads.Load()
			}
			if n != 1 {
				t.Errorf("%d requests of the %s: an answer too large to read was retried", n, op)
			}
		})
	}
}
