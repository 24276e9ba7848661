package circleci

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	stdsync "sync"
	"time"
)

// limiter adapts a Client's API requests to the API's rate limit, for the
// whole client at once: CircleCI counts a token's requests, not one
// caller's, so when one request is told to slow down every request must.
//
// It bounds the requests in flight (LimitRequests sets the ceiling) and
// paces their starts. A 429 halves the bound (to no fewer than one), sets
// the pace just under what the API accepted in the last second (a rate
// limiter lets through what it refills, so that is its budget) and pauses
// every request for the Retry-After the answer asked for, or a backoff
// when it asked for none. Each clean answer raises both again, additively,
// up to the ceiling. RateLimit-* and X-RateLimit-* headers, when an answer
// carries them, pace requests before a 429 comes: once less than half of a
// window's requests remain, the rest are spread over the time to its reset.
// Downloads never pass through it: they go to other hosts.
type limiter struct {
	mu stdsync.Mutex
	// now is the clock; time.Now outside tests.
	now func() time.Time
	// sleep waits for d or until ctx ends; sleepCtx outside tests.
	sleep func(ctx context.Context, d time.Duration) error
	// initialPause is the pause after a 429 without Retry-After, doubled
	// for each further one before a clean answer, up to maxPause.
	initialPause, maxPause time.Duration
	// report is told, once, when the client first slows down; debug gets
	// a line for each change after that.
	report func(msg string)
	debug  func(msg string, args ...any)

	ceiling  int     // requests in flight at most (LimitRequests); 0: no bound
	bound    float64 // requests in flight now allowed; 0: no bound
	inFlight int
	peak     int // the most in flight at once, the bound's ceiling when there is none
	// changed is closed, and replaced, whenever a waiting request may
	// now go: a slot freed, a bound raised.
	changed chan struct{}

	pauseUntil time.Time     // no request starts before
	nextPause  time.Duration // the pause of the next 429 without Retry-After
	rate       float64       // requests/s learned from 429s; 0: unpaced
	quotaRate  float64       // requests/s the headers allow; 0: unpaced
	quotaUntil time.Time     // when quotaRate lapses (the window resets)
	next       time.Time     // when the next request may start, by the pace
	decreased  time.Time     // when a 429 last slowed the client down
	accepted   []time.Time   // ring of the latest clean answers' times
	acceptedAt int

	slowed  bool // reported
	limited int  // 429s seen
}

// ticket is one request's slot.
type ticket struct {
	began time.Time
}

// minMeasured is the fewest clean answers in the last second that tell
// the API's budget: a client whose first requests are refused (another one
// spent the token's budget) is held back by the pause and the bound until
// it has seen that many.
const minMeasured = 10

// acceptedRing is how many clean answers the limiter remembers to measure
// the API's accepted rate over the last second.
const acceptedRing = 1024

func newLimiter(p RetryPolicy, report func(string), debug func(string, ...any)) *limiter {
	return &limiter{
		now:          time.Now,
		sleep:        sleepCtx,
		initialPause: p.InitialInterval,
		maxPause:     p.MaxInterval,
		nextPause:    p.InitialInterval,
		report:       report,
		debug:        debug,
		changed:      make(chan struct{}),
		accepted:     make([]time.Time, 0, acceptedRing),
	}
}

// setCeiling bounds the requests in flight to n (n < 1: no bound), keeping
// what the client has learned: a bound lowered by 429s stays lowered.
func (l *limiter) setCeiling(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ceiling = max(n, 0)
	switch {
	case n < 1:
		l.bound = 0
	case l.bound == 0 || l.bound > float64(n) || !l.slowedLocked():
		l.bound = float64(n)
	}
	l.wakeLocked()
}

// slowedLocked reports whether a 429 has lowered the bound.
func (l *limiter) slowedLocked() bool { return !l.decreased.IsZero() }

func (l *limiter) wakeLocked() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// acquire waits until a request may start: no pause under way, a slot
// free, and its turn by the pace. The caller must release the ticket.
func (l *limiter) acquire(ctx context.Context) (*ticket, error) {
	var waited time.Time // the end of the pause waited out last
	for {
		l.mu.Lock()
		now := l.now()
		if now.Before(l.pauseUntil) && l.pauseUntil.After(waited) {
			wait := l.pauseUntil.Sub(now)
			waited = l.pauseUntil
			l.mu.Unlock()
			if err := l.sleep(ctx, wait); err != nil {
				return nil, err
			}
			continue
		}
		if l.bound > 0 && l.inFlight >= int(l.bound) {
			ch := l.changed
			l.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		l.inFlight++
		l.peak = max(l.peak, l.inFlight)
		start := now
		if gap := l.gapLocked(now); gap > 0 {
			start = maxTime(now, l.next)
			l.next = start.Add(gap)
		}
		pauseUntil := l.pauseUntil
		l.mu.Unlock()
		if start.After(now) {
			if err := l.sleep(ctx, start.Sub(now)); err != nil {
				l.release(&ticket{}, err)
				return nil, err
			}
		}
		l.mu.Lock()
		paused := l.pauseUntil.After(pauseUntil) && l.pauseUntil.After(waited) && l.now().Before(l.pauseUntil)
		l.mu.Unlock()
		if paused {
			// A 429 came in while this request waited its turn: it waits
			// out the pause like the others.
			l.release(&ticket{}, nil)
			continue
		}
		return &ticket{began: l.now()}, nil
	}
}

// gapLocked is the time between request starts the pace asks for now; 0
// when requests are not paced.
func (l *limiter) gapLocked(now time.Time) time.Duration {
	rate := l.rate
	if l.quotaRate > 0 && now.Before(l.quotaUntil) && (rate == 0 || l.quotaRate < rate) {
		rate = l.quotaRate
	}
	if rate <= 0 {
		return 0
	}
	return min(time.Duration(float64(time.Second)/rate), maxHeaderWait)
}

// maxHeaderWait caps the waits the rate-limit headers impose, the pause
// until a spent window resets and the gap between paced requests, so that
// a window of an hour or a day never holds the client back unseen: the
// 429 that comes instead is retried for RetryPolicy.MaxElapsed, and says
// so when it gives up.
const maxHeaderWait = DefaultMaxInterval

// release returns t's slot and learns from how its request ended: err is
// nil or an *Error for an answer, anything else for no answer.
func (l *limiter) release(t *ticket, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inFlight--
	l.wakeLocked()
	if t.began.IsZero() {
		return // never sent: nothing learned
	}
	var e *Error
	switch {
	case err == nil || errors.As(err, &e) && e.StatusCode != http.StatusTooManyRequests:
		l.cleanLocked()
	case e != nil:
		l.tooManyLocked(t, e)
	}
}

// cleanLocked notes an answer that was not a 429 and speeds up: each
// clean answer adds 1/bound to the bound (one more slot per bound's worth
// of answers) and 1+rate/20 requests/s per second's worth of answers to
// the pace.
func (l *limiter) cleanLocked() {
	now := l.now()
	if len(l.accepted) < acceptedRing {
		l.accepted = append(l.accepted, now)
	} else {
		l.accepted[l.acceptedAt] = now
		l.acceptedAt = (l.acceptedAt + 1) % acceptedRing
	}
	l.nextPause = l.initialPause
	if l.bound > 0 && l.slowedLocked() {
		top := float64(l.ceiling)
		if l.ceiling == 0 {
			top = float64(max(l.peak, 1))
		}
		l.bound = min(top, l.bound+1/l.bound)
	}
	if l.rate > 0 {
		l.rate += (1 + l.rate/20) / l.rate
	}
}

// acceptedLastSecond counts the clean answers of the last second.
func (l *limiter) acceptedLastSecond(now time.Time) int {
	n := 0
	for _, at := range l.accepted {
		if now.Sub(at) <= time.Second {
			n++
		}
	}
	return n
}

// tooManyLocked slows the client down for a 429 to t's request. A 429 to
// a request sent before the last slowdown is news from before it and
// slows down no further; its Retry-After is still waited out.
func (l *limiter) tooManyLocked(t *ticket, e *Error) {
	l.limited++
	now := l.now()
	pause := min(e.RetryAfter, MaxRetryAfter)
	fresh := t.began.After(l.decreased) || l.decreased.IsZero()
	if pause == 0 && fresh {
		pause = l.nextPause
		l.nextPause = min(2*l.nextPause, l.maxPause)
	}
	if until := now.Add(pause); until.After(l.pauseUntil) {
		l.pauseUntil = until
	}
	if !fresh {
		l.debug("circleci rate limited", "path", e.Path, "pause", pause)
		return
	}
	l.decreased = now
	switch {
	case l.bound > 0:
		l.bound = max(1, math.Floor(l.bound/2))
	default:
		l.bound = max(1, math.Floor(float64(l.inFlight+1)/2))
	}
	accepted := float64(l.acceptedLastSecond(now))
	switch {
	case l.rate > 0:
		l.rate = max(1, l.rate/2, 0.9*min(accepted, l.rate))
	case accepted >= minMeasured:
		l.rate = 0.9 * accepted
	}
	l.next = time.Time{}
	l.debug("circleci rate limited: slowing down", "path", e.Path, "pause", pause, "in_flight", int(l.bound), "rate", math.Round(l.rate))
	pace := ""
	if l.rate > 0 {
		pace = " about " + perSecond(l.rate) + ","
	}
	l.reportLocked(fmt.Sprintf("answered %d %s: slowing API requests down to%s %s; they speed up again as answers come back clean",
		e.StatusCode, http.StatusText(e.StatusCode), pace, l.atOnce()))
}

// reportLocked says once that the client slowed down, why and to what.
func (l *limiter) reportLocked(msg string) {
	if l.slowed {
		return
	}
	l.slowed = true
	l.report(msg)
}

// perSecond says a rate of requests, for a message.
func perSecond(r float64) string {
	if r < 10 {
		return strconv.FormatFloat(r, 'f', 1, 64) + "/s"
	}
	return strconv.FormatFloat(r, 'f', 0, 64) + "/s"
}

// atOnce says the bound on requests in flight, for a message.
func (l *limiter) atOnce() string {
	if l.bound > 0 {
		return strconv.Itoa(int(l.bound)) + " at once"
	}
	return "no bound on requests at once"
}

// observe paces requests by the rate-limit headers of an answer, when it
// has them.
func (l *limiter) observe(h http.Header) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	qs := parseQuotas(h, now)
	if len(qs) == 0 {
		return
	}
	var (
		rate  float64
		until time.Time
		low   *quota
	)
	for i, q := range qs {
		if q.remaining <= 0 {
			// Spent: nothing goes until the window resets (or for the
			// longest wait a retry would make; a 429 says the rest).
			if u := now.Add(min(q.reset, maxHeaderWait)); u.After(l.pauseUntil) {
				l.pauseUntil = u
				l.debug("circleci rate limit spent: pausing", "window", q.window, "reset", q.reset)
			}
			continue
		}
		if !q.low(l.ceiling) {
			continue
		}
		r := float64(q.remaining) / q.reset.Seconds()
		if rate == 0 || r < rate {
			rate, until, low = r, now.Add(q.reset), &qs[i]
		}
	}
	was := l.quotaRate > 0 && now.Before(l.quotaUntil)
	l.quotaRate, l.quotaUntil = rate, until
	switch {
	case low != nil && !was:
		l.debug("circleci rate limit running low: pacing", "window", low.window, "remaining", low.remaining, "limit", low.limit, "reset", low.reset, "rate", math.Round(rate))
		of := ""
		if low.limit > 0 {
			of = " of " + strconv.FormatInt(low.limit, 10)
		}
		l.reportLocked(fmt.Sprintf("says %d%s requests are left until its rate limit resets in %s: pacing API requests to spread them out, about %s for now",
			low.remaining, of, roughly(low.reset), perSecond(rate)))
	case low == nil && was:
		l.debug("circleci rate limit no longer low: pacing off")
	}
}

// quota is one rate-limit window as an answer's headers describe it.
type quota struct {
	window    string // "RateLimit", "Second", "Minute", …
	limit     int64  // requests per window; 0 if not said
	remaining int64
	reset     time.Duration // until the window resets
}

// low reports whether so little of q is left that requests must be spread
// over the time to its reset: less than half of its limit, or, when the
// limit is not said, fewer than two rounds of requests in flight.
func (q quota) low(ceiling int) bool {
	if q.reset <= 0 {
		return false
	}
	if q.limit > 0 {
		return 2*q.remaining <= q.limit
	}
	return q.remaining <= int64(max(2*ceiling, 10))
}

// quotaWindows are the X-RateLimit-*-<Window> suffixes and their lengths,
// the reset assumed when a window's own is not sent.
var quotaWindows = []struct {
	name string
	d    time.Duration
}{{"Second", time.Second}, {"Minute", time.Minute}, {"Hour", time.Hour}, {"Day", 24 * time.Hour}}

// parseQuotas reads the rate-limit headers of an answer received at now:
// RateLimit-Limit/-Remaining/-Reset (the IETF draft's, as Kong sends them),
// X-RateLimit-{Limit,Remaining,Reset}-<Second|Minute|Hour|Day>, and the
// bare X-RateLimit-Limit/-Remaining/-Reset. A reset is seconds from now,
// or a Unix time when it is that large (some servers send one). Windows
// without Remaining, or with values that are not numbers, are passed over.
func parseQuotas(h http.Header, now time.Time) []quota {
	var qs []quota
	add := func(window, limit, remaining, reset string, dflt time.Duration) {
		rem, ok := headerInt(remaining)
		if !ok {
			return
		}
		q := quota{window: window, remaining: rem, reset: dflt}
		q.limit, _ = headerInt(limit)
		if d, ok := parseReset(reset, now); ok {
			q.reset = d
		}
		if q.reset <= 0 && rem > 0 {
			return
		}
		qs = append(qs, q)
	}
	add("RateLimit", h.Get("RateLimit-Limit"), h.Get("RateLimit-Remaining"), h.Get("RateLimit-Reset"), 0)
	add("X-RateLimit", h.Get("X-RateLimit-Limit"), h.Get("X-RateLimit-Remaining"), h.Get("X-RateLimit-Reset"), 0)
	for _, w := range quotaWindows {
		add(w.name, h.Get("X-RateLimit-Limit-"+w.name), h.Get("X-RateLimit-Remaining-"+w.name), h.Get("X-RateLimit-Reset-"+w.name), w.d)
	}
	return qs
}

// headerInt reads the first number of a header value: "50", or "50, 50;w=1"
// as the IETF draft's RateLimit-Limit may list its policies.
func headerInt(v string) (int64, bool) {
	v, _, _ = strings.Cut(v, ",")
	v, _, _ = strings.Cut(v, ";")
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	return n, err == nil && n >= 0
}

// unixResetFrom is where a reset stops being seconds and becomes a Unix
// time: no window lasts 30 years, and no clock is before 2001.
const unixResetFrom = 1e9

// parseReset reads a reset: seconds from now (fractions allowed), or a Unix
// time in seconds. A reset in the past is no wait.
func parseReset(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	if f >= unixResetFrom {
		at := time.Unix(0, int64(f*float64(time.Second)))
		return max(at.Sub(now), 0), true
	}
	return time.Duration(f * float64(time.Second)), true
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// sleepCtx waits for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
