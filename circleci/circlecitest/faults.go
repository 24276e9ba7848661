package circlecitest

import (
	"fmt"
	"hash/fnv"
	"net/http"
	"time"
)

// Hosts a [Call] can arrive at.
const (
	HostAPI       = "api"       // the API, Server.URL
	HostArtifacts = "artifacts" // the artifact host, Server.ArtifactURL
	HostStorage   = "storage"   // the presigned storage host, Server.StorageURL
)

// FaultKind says how a request fails.
type FaultKind int

const (
	// NoFault serves the request normally.
	NoFault FaultKind = iota
	// FaultStatus answers Fault.Status (429, 500, 502, 503, …) with
	// Fault.RetryAfter in Retry-After when it is set.
	FaultStatus
	// FaultCut sends the headers (with the full Content-Length) and
	// Fault.After bytes of the body, then resets the connection (RST).
	// Over HTTP/2 it resets the request's stream (RST_STREAM) and leaves
	// the connection to the other requests it carries.
	FaultCut
	// FaultTruncate sends the headers (with the full Content-Length) and
	// Fault.After bytes of the body, then closes the connection cleanly
	// (FIN), so the client sees an early EOF. Over HTTP/2, where a stream
	// that ends short is not an error, it resets the stream as FaultCut.
	FaultTruncate
	// FaultStall sends the headers and Fault.After bytes of the body, then
	// sends nothing for Fault.Duration, then the rest.
	FaultStall
	// FaultHang reads the request and never answers, until the client goes
	// away or the Server is closed.
	FaultHang
)

// A Fault is what a [FaultFunc] decides for one request. The zero Fault
// serves the request normally. Body faults (cut, truncate, stall) act on
// whatever the request answers, a JSON page as well as an artifact; they have
// no effect on a body of After bytes or fewer, except a stall, which then
// happens after the whole body.
type Fault struct {
	Kind FaultKind
	// Status is the status code of a FaultStatus.
	Status int
	// RetryAfter, if set, is sent verbatim as the Retry-After header of a
	// FaultStatus, e.g. "2".
	RetryAfter string
	// PlainText makes a FaultStatus on the API answer a text/plain body
	// ("Rate limited." for 429) instead of JSON {"message": …}, as CircleCI's
	// rate limiter has been seen to do.
	PlainText bool
	// After is the number of body bytes sent before a cut, truncation or
	// stall.
	After int64
	// Duration is the length of a stall.
	Duration time.Duration
}

// StatusFault answers status, with Retry-After retryAfter unless it is "".
func StatusFault(status int, retryAfter string) Fault {
	return Fault{Kind: FaultStatus, Status: status, RetryAfter: retryAfter}
}

// CutFault resets the connection after after body bytes.
func CutFault(after int64) Fault { return Fault{Kind: FaultCut, After: after} }

// TruncateFault closes the connection after after body bytes, short of the
// declared Content-Length.
func TruncateFault(after int64) Fault { return Fault{Kind: FaultTruncate, After: after} }

// StallFault pauses for d after after body bytes.
func StallFault(after int64, d time.Duration) Fault {
	return Fault{Kind: FaultStall, After: after, Duration: d}
}

// HangFault never answers.
func HangFault() Fault { return Fault{Kind: FaultHang} }

func (f Fault) String() string {
	switch f.Kind {
	case NoFault:
		return "none"
	case FaultStatus:
		return fmt.Sprintf("status %d", f.Status)
	case FaultCut:
		return fmt.Sprintf("cut after %d", f.After)
	case FaultTruncate:
		return fmt.Sprintf("truncate after %d", f.After)
	case FaultStall:
		return fmt.Sprintf("stall %v after %d", f.Duration, f.After)
	case FaultHang:
		return "hang"
	}
	return fmt.Sprintf("fault kind %d", int(f.Kind))
}

// A Call describes one request to a [FaultFunc].
type Call struct {
	// Host is HostAPI, HostArtifacts or HostStorage.
	Host string
	// Route names the endpoint, as counted by [Server.Requests].
	Route string
	// Download reports whether this request serves an artifact's bytes: on
	// the artifact host without Options.Redirect, on the storage host with
	// it.
	Download bool
	// Artifact is the artifact a download host request names, nil on the API
	// or when no artifact has that URL.
	Artifact *Artifact
	// Seq counts the requests to Host (1 for the first) since the fault
	// policy was last set.
	Seq int
	// Attempt counts the requests to the same Host and Key (1 for the first)
	// since the fault policy was last set.
	Attempt int
	// Key identifies what is requested: the artifact (job ID, node, path) on
	// the download hosts, the escaped path and query on the API.
	Key string
	// Request is the request itself; a FaultFunc must not read its body.
	Request *http.Request
}

// A FaultFunc decides how a request fails. It is called once per request,
// possibly from several goroutines at once, and its decision should depend
// on the Call only, so runs are reproducible.
type FaultFunc func(c Call) Fault

// FailFirst fails the first n attempts at every key (every artifact, every
// API URL) with f.
func FailFirst(n int, f Fault) FaultFunc {
	return func(c Call) Fault {
		if c.Attempt <= n {
			return f
		}
		return Fault{}
	}
}

// FailEvery fails every nth request to a host (the nth, 2nth, …) with f.
// The number of failures is deterministic; which artifacts get them depends
// on the order requests arrive in (see FailPercent for a fixed choice).
func FailEvery(n int, f Fault) FaultFunc {
	return func(c Call) Fault {
		if n > 0 && c.Seq%n == 0 {
			return f
		}
		return Fault{}
	}
}

// FailPercent fails about pct percent of attempts with f, choosing by a hash
// of the key and the attempt number, so the same attempts fail whatever the
// order or concurrency of requests.
func FailPercent(pct int, f Fault) FaultFunc {
	return func(c Call) Fault {
		h := fnv.New64a()
		fmt.Fprintf(h, "%s\x00%s\x00%d", c.Host, c.Key, c.Attempt)
		if int(h.Sum64()%100) < pct {
			return f
		}
		return Fault{}
	}
}

// OnDownloads applies ff only to requests that serve artifact bytes.
func OnDownloads(ff FaultFunc) FaultFunc {
	return func(c Call) Fault {
		if c.Download {
			return ff(c)
		}
		return Fault{}
	}
}

// OnHost applies ff only to requests to host (HostAPI, HostArtifacts or
// HostStorage).
func OnHost(host string, ff FaultFunc) FaultFunc {
	return func(c Call) Fault {
		if c.Host == host {
			return ff(c)
		}
		return Fault{}
	}
}

// OnRoute applies ff only to requests for route (see [Server.Requests]).
func OnRoute(route string, ff FaultFunc) FaultFunc {
	return func(c Call) Fault {
		if c.Route == route {
			return ff(c)
		}
		return Fault{}
	}
}

// OnArtifact applies ff only to download host requests for a.
func OnArtifact(a *Artifact, ff FaultFunc) FaultFunc {
	return func(c Call) Fault {
		if c.Artifact == a {
			return ff(c)
		}
		return Fault{}
	}
}

// FirstOf returns the first fault of ffs that is not NoFault.
func FirstOf(ffs ...FaultFunc) FaultFunc {
	return func(c Call) Fault {
		for _, ff := range ffs {
			if f := ff(c); f.Kind != NoFault {
				return f
			}
		}
		return Fault{}
	}
}
