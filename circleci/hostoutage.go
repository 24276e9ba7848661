package circleci

import (
	"context"
	"errors"
	stdsync "sync"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// downloadHosts keeps, per download host (an artifact host, a storage host
// it redirects to), when it last answered and the spell of outage it is in,
// so that a host that refuses or drops every request is waited for, like
// the API, instead of failing each transfer on its own attempts.
type downloadHosts struct {
	mu    stdsync.Mutex
	hosts map[string]*hostHealth
}

// hostHealth is what downloadHosts knows of one host.
type hostHealth struct {
	lastOK time.Time // when a request last got an answer; zero if none has
	since  time.Time // when the current spell of outage began; zero if none
}

func (d *downloadHosts) get(host string) *hostHealth {
	if d.hosts == nil {
		d.hosts = make(map[string]*hostHealth)
	}
	h := d.hosts[host]
	if h == nil {
		h = &hostHealth{}
		d.hosts[host] = h
	}
	return h
}

// hostAnswered notes that host answered a download, and reports the end of its
// spell of outage if it was in one.
func (c *Client) hostAnswered(host string) {
	d := &c.downloadHosts
	d.mu.Lock()
	h := d.get(host)
	since := h.since
	h.lastOK, h.since = time.Now(), time.Time{}
	d.mu.Unlock()
	if !since.IsZero() {
		c.onTrouble(Trouble{Host: host, Download: true, RetryFor: c.retry.MaxElapsed, Over: true, Lasted: time.Since(since)})
	}
}

// hostDown decides about a download of host that began at began and failed
// with err without an answer. It returns the wait before trying again when
// the host is down: it refused or dropped the connection (or it was lost
// before the answer), it has answered this client before, and has answered
// no request since this one began (else the failure is this request's
// own), and it has not been down for longer than the API's outage budget
// (RetryPolicy.MaxElapsed). The first failure of a spell reports it. It
// returns false, and the error to return, when the request should fail as
// it is: to be retried as the caller retries, or, once the host has been
// down for the whole budget, as a failure that is not retried.
func (c *Client) hostDown(host string, err error, began time.Time, b backoff.BackOff) (time.Duration, bool, error) {
	var ae *Error
	if !IsRetryable(err) || errors.As(err, &ae) || errors.Is(err, ErrIdleTimeout) {
		// An answer, a failure that is not an outage, or a request the
		// host took and left unanswered: that may be this one object's
		// trouble, and costs an idle timeout per try anyway.
		return 0, false, err
	}
	d := &c.downloadHosts
	d.mu.Lock()
	h := d.get(host)
	if h.lastOK.IsZero() || began.Before(h.lastOK) {
		d.mu.Unlock()
		return 0, false, err
	}
	first := h.since.IsZero()
	if first {
		h.since = time.Now()
	}
	lasted := time.Since(h.since)
	d.mu.Unlock()
	if first {
		c.onTrouble(Trouble{Host: host, Download: true, Err: err, RetryFor: c.retry.MaxElapsed})
	}
	left := c.retry.MaxElapsed - lasted
	if left <= 0 {
		return 0, false, &hostDownError{err: err, lasted: lasted}
	}
	wait := b.NextBackOff()
	if wait == backoff.Stop {
		wait = c.retry.MaxInterval
	}
	return min(wait, left), true, nil
}

// rideOut sends a download with send, and while its host is down (see
// hostDown) waits and sends it again, until the host answers, the outage
// outlasts the budget or ctx ends. send returns the host that answered or
// failed.
func (c *Client) rideOut(ctx context.Context, send func() (string, error)) error {
	var b backoff.BackOff
	for {
		began := time.Now()
		host, err := send()
		if err == nil {
			c.hostAnswered(host)
			return nil
		}
		var ae *Error
		if errors.As(err, &ae) {
			c.hostAnswered(host)
			return err
		}
		if b == nil {
			b = backoff.NewExponentialBackOff(
				backoff.WithInitialInterval(c.retry.InitialInterval),
				backoff.WithMaxInterval(c.retry.MaxInterval),
				backoff.WithMaxElapsedTime(0),
			)
		}
		wait, down, err := c.hostDown(host, err, began, b)
		if !down {
			return err
		}
		c.logger.DebugContext(ctx, "download host down", "host", host, "wait", wait, "error", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
	}
}

// hostDownError is the failure of a download whose host has refused or
// dropped every request for the whole outage budget. It is not retryable:
// the transfers to that host fail at once, and a later run fetches them.
type hostDownError struct {
	err    error // a *netError naming the host
	lasted time.Duration
}

func (e *hostDownError) Error() string {
	return e.err.Error() + "; gave up after the host did not answer for " + roughly(e.lasted).String() +
		": run the same command again once it answers"
}

func (e *hostDownError) Unwrap() error { return e.err }
