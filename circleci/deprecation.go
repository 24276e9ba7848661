package circleci

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	stdsync "sync"
	"time"
)

// RouteV2Artifacts is the route of API v2's job artifact list as
// [Deprecation.Endpoint] names it.
const RouteV2Artifacts = "GET /api/v2/project/{project-slug}/{number}/artifacts"

// Deprecation is CircleCI's notice, in the Deprecation and Sunset headers
// of its answers, that an endpoint is deprecated or will be removed.
type Deprecation struct {
	// Endpoint is the route, method and path with the variable parts as
	// placeholders: GET /api/v2/project/{project-slug}/{number}/artifacts.
	Endpoint string
	// Deprecated is when the endpoint is (or was) deprecated, zero when the
	// header gave no date ("true" in older drafts) or was absent.
	Deprecated time.Time
	// DeprecatedSince reports a Deprecation header, with a date or not.
	DeprecatedSince bool
	// Sunset is when the endpoint goes away; zero when not announced.
	Sunset time.Time
	// Link is the Link header of the answer, where CircleCI would point to
	// an explanation; "" when absent.
	Link string
}

// SunsetPassed reports whether the endpoint's announced removal is before
// now.
func (d Deprecation) SunsetPassed(now time.Time) bool {
	return !d.Sunset.IsZero() && d.Sunset.Before(now)
}

// String says what CircleCI announced, in one line.
func (d Deprecation) String() string {
	var b strings.Builder
	b.WriteString("CircleCI marks " + d.Endpoint)
	switch {
	case !d.Deprecated.IsZero():
		b.WriteString(" as deprecated since " + d.Deprecated.UTC().Format(time.DateOnly))
	case d.DeprecatedSince:
		b.WriteString(" as deprecated")
	}
	if !d.Sunset.IsZero() {
		if d.DeprecatedSince {
			b.WriteString(",")
		}
		b.WriteString(" for removal on " + d.Sunset.UTC().Format(time.DateOnly))
	}
	if d.Link != "" {
		b.WriteString(" (see " + d.Link + ")")
	}
	return b.String()
}

// notices gathers the Deprecation and Sunset headers of every API answer,
// the first of each endpoint.
type notices struct {
	mu stdsync.Mutex
	m  map[string]Deprecation
}

// note records the notice h carries for route, if any.
func (n *notices) note(h http.Header, route string, now time.Time) {
	dep, sun := strings.TrimSpace(h.Get("Deprecation")), strings.TrimSpace(h.Get("Sunset"))
	if dep == "" && sun == "" {
		return
	}
	d := Deprecation{Endpoint: route, Link: clean(h.Get("Link"))}
	if dep != "" && !strings.EqualFold(dep, "false") {
		d.DeprecatedSince = true
		d.Deprecated = parseDeprecation(dep)
	}
	if t, err := http.ParseTime(sun); err == nil {
		d.Sunset = t
	}
	if !d.DeprecatedSince && d.Sunset.IsZero() {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.m == nil {
		n.m = make(map[string]Deprecation)
	}
	if _, ok := n.m[route]; !ok {
		n.m[route] = d
	}
}

// parseDeprecation reads a Deprecation header: "@<epoch seconds>" (RFC
// 9745), an HTTP date (earlier drafts) or "true" (older drafts: no date).
func parseDeprecation(v string) time.Time {
	if s, ok := strings.CutPrefix(v, "@"); ok {
		if secs, err := strconv.ParseInt(s, 10, 64); err == nil {
			return time.Unix(secs, 0).UTC()
		}
		return time.Time{}
	}
	if t, err := http.ParseTime(v); err == nil {
		return t
	}
	return time.Time{}
}

// Deprecations returns the notices of deprecation and removal the API has
// sent so far, one per endpoint, in the order of their endpoints.
func (c *Client) Deprecations() []Deprecation {
	c.notices.mu.Lock()
	defer c.notices.mu.Unlock()
	out := make([]Deprecation, 0, len(c.notices.m))
	for _, d := range c.notices.m {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b Deprecation) int { return strings.Compare(a.Endpoint, b.Endpoint) })
	return out
}

// route names the endpoint of an escaped request path: the host's own path
// prefix dropped, a project slug, numbers and UUIDs as placeholders.
func (c *Client) route(escaped string) string {
	prefix := strings.TrimSuffix(c.base.EscapedPath(), "/api/v2")
	segs := strings.Split(strings.TrimPrefix(strings.TrimPrefix(escaped, prefix), "/"), "/")
	out := make([]string, 0, len(segs))
	for i := 0; i < len(segs); i++ {
		s := segs[i]
		switch {
		case s == "project" && i+1 < len(segs):
			out = append(out, s, "{project-slug}")
			if !strings.Contains(strings.ToLower(segs[i+1]), "%2f") {
				i += 2 // gh/org/repo in three segments
			}
			i++
			continue
		case s != "" && strings.Trim(s, "0123456789") == "":
			s = "{number}"
		case IsUUID(s):
			s = "{id}"
		}
		out = append(out, s)
	}
	return "GET /" + strings.Join(out, "/")
}
