package circlecitest

import (
	"strconv"
	"strings"
)

// OnJobListing applies ff only to the API requests that list j's artifacts
// (GET /project/<slug>/<number>/artifacts, or API v3's /jobs/<id>/artifacts),
// every page of them: with a persistent fault, a job whose artifacts cannot
// be listed however often the client asks, by either API version, while
// every other job lists normally.
func OnJobListing(j *Job, ff FaultFunc) FaultFunc {
	v2 := "/" + strconv.FormatInt(j.Number(), 10) + "/artifacts"
	v3 := "/jobs/" + j.ID() + "/artifacts"
	return func(c Call) Fault {
		if c.Host != HostAPI || c.Request == nil {
			return Fault{}
		}
		if (c.Route == "artifacts" && strings.HasSuffix(c.Request.URL.Path, v2)) ||
			(c.Route == "v3-artifacts" && strings.HasSuffix(c.Request.URL.Path, v3)) {
			return ff(c)
		}
		return Fault{}
	}
}

// OnArtifactListings applies ff to every job's artifact listing, through
// API v2 or v3: a failure no choice of API gets around.
func OnArtifactListings(ff FaultFunc) FaultFunc {
	return func(c Call) Fault {
		if c.Route == "artifacts" || c.Route == "v3-artifacts" {
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
