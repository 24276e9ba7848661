package circlecitest

import (
	"strconv"
	"strings"
)

// OnJobListing applies ff only to the API requests that list j's artifacts
// (GET /project/<slug>/<number>/artifacts), every page of them: with a
// persistent fault, a job whose artifacts cannot be listed however often the
// client asks, while every other job lists normally.
func OnJobListing(j *Job, ff FaultFunc) FaultFunc {
	suffix := "/" + strconv.FormatInt(j.Number(), 10) + "/artifacts"
	return func(c Call) Fault {
		if c.Host == HostAPI && c.Route == "artifacts" && c.Request != nil && strings.HasSuffix(c.Request.URL.Path, suffix) {
			return ff(c)
		}
		return Fault{}
	}
}

// Always answers every request it is asked about with f: with [OnArtifact]
// or [OnJobListing], a permanent failure of one object or one job.
func Always(f Fault) FaultFunc {
	return func(Call) Fault { return f }
}
