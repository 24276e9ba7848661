package sync

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net/http"
	"strconv"
	stdsync "sync"
	"sync/atomic"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci"
)

// The API versions --api chooses between for artifact listings.
const (
	// APIAuto lists through API v2 and moves to v3 for the rest of the run
	// once v2's artifacts route is gone (404 or 410 for a job that exists)
	// or past its announced Sunset.
	APIAuto = "auto"
	// APIV2 lists by job number (the only way on CircleCI Server).
	APIV2 = "v2"
	// APIV3 lists by job UUID, with the token as a Bearer credential.
	APIV3 = "v3"
)

// jobArtifactLister lists a job's artifacts by its UUID through API v3 (a
// *circleci.Client does). It is discovered with a type assertion, so
// that the engine's API and its fakes need not know of v3.
type jobArtifactLister interface {
	JobArtifacts(ctx context.Context, jobID string) iter.Seq2[circleci.Artifact, error]
}

// deprecationSource is an API that gathers CircleCI's Deprecation and
// Sunset notices (a *circleci.Client does).
type deprecationSource interface {
	Deprecations() []circleci.Deprecation
}

// ChooseAPI returns api with its artifact listings made through the API
// version named by version (APIAuto, APIV2 or APIV3; "" is APIAuto); the
// rest of api is used as it is. The same artifact has the same Artifact
// through either version, so nothing recorded depends on the choice.
//
// The returned func reports, at warning level, the deprecation and
// removal notices the API sent during the run, once each: call it when
// the run ends, however it ended.
func ChooseAPI(api API, version string, log *slog.Logger) (API, func()) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &apiChoice{API: api, version: version, log: log, ids: map[string]string{}, projects: map[string]string{}}
	c.v3, _ = api.(jobArtifactLister)
	c.deps, _ = api.(deprecationSource)
	return c, c.reportDeprecations
}

// apiChoice routes artifact listings to API v2 or v3. API v3 names a job by
// its UUID, so the UUIDs the run comes across (workflow job lists, jobs
// looked up by UUID) are kept by project and job number.
type apiChoice struct {
	API
	version string
	log     *slog.Logger
	v3      jobArtifactLister // nil: the API has no v3
	deps    deprecationSource // nil: the API gathers no notices

	switched   atomic.Bool
	switchOnce stdsync.Once

	mu       stdsync.Mutex
	ids      map[string]string // jobKey → job UUID
	projects map[string]string // projectKey → project ID
}

// projectKey names a project whatever the spelling of its slug
// (gh/github, bb/bitbucket).
func projectKey(slug circleci.Slug) string {
	return canonicalVCS(slug.VCS) + "/" + slug.Org + "/" + slug.Repo
}

func jobKey(project string, n int64) string { return project + "#" + strconv.FormatInt(n, 10) }

func (c *apiChoice) remember(key, id string) {
	c.mu.Lock()
	c.ids[key] = id
	c.mu.Unlock()
}

func (c *apiChoice) Project(ctx context.Context, slug circleci.Slug) (*circleci.Project, error) {
	p, err := c.API.Project(ctx, slug)
	if err == nil && p.ID != "" {
		c.mu.Lock()
		c.projects[projectKey(slug)] = p.ID
		c.mu.Unlock()
	}
	return p, err
}

func (c *apiChoice) WorkflowJobs(ctx context.Context, workflowID string) iter.Seq2[circleci.Job, error] {
	return func(yield func(circleci.Job, error) bool) {
		for j, err := range c.API.WorkflowJobs(ctx, workflowID) {
			if err == nil && j.JobNumber != nil && j.ID != "" {
				if s, perr := circleci.ParseSlug(j.ProjectSlug); perr == nil {
					c.remember(jobKey(projectKey(s), *j.JobNumber), j.ID)
				}
			}
			if !yield(j, err) {
				return
			}
		}
	}
}

func (c *apiChoice) JobByID(ctx context.Context, id string) (*circleci.JobInfo, error) {
	j, err := c.API.JobByID(ctx, id)
	if err == nil && j.JobNumber != nil && j.ProjectID != "" {
		c.remember(jobKey("id:"+j.ProjectID, *j.JobNumber), j.ID)
	}
	return j, err
}

// lookup returns the UUID of job n of slug, if the run has come across it.
func (c *apiChoice) lookup(slug circleci.Slug, n int64) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if id := c.ids[jobKey(projectKey(slug), n)]; id != "" {
		return id
	}
	if pid := c.projects[projectKey(slug)]; pid != "" {
		return c.ids[jobKey("id:"+pid, n)]
	}
	return ""
}

// jobID returns the UUID of job n of slug, looking it up in the job's
// workflow when the run has not come across it.
func (c *apiChoice) jobID(ctx context.Context, slug circleci.Slug, n int64) (string, error) {
	if id := c.lookup(slug, n); id != "" {
		return id, nil
	}
	d, err := c.API.JobDetails(ctx, slug, n)
	if err != nil {
		return "", err
	}
	if d.LatestWorkflow.ID != "" {
		for _, err := range c.WorkflowJobs(ctx, d.LatestWorkflow.ID) {
			if err != nil {
				return "", err
			}
		}
	}
	if id := c.lookup(slug, n); id != "" {
		return id, nil
	}
	return "", fmt.Errorf("cannot find the ID of job %d, by which API v3 lists artifacts: its workflow does not list it; give --api v2", n)
}

func (c *apiChoice) Artifacts(ctx context.Context, slug circleci.Slug, n int64) iter.Seq2[circleci.Artifact, error] {
	switch {
	case c.version == APIV3:
		if c.v3 == nil {
			return func(yield func(circleci.Artifact, error) bool) {
				yield(circleci.Artifact{}, errors.New("this client cannot list artifacts through API v3; give --api v2"))
			}
		}
		return c.viaV3(ctx, slug, n)
	case c.version == APIV2 || c.v3 == nil:
		return c.API.Artifacts(ctx, slug, n)
	case c.switched.Load():
		return c.viaV3(ctx, slug, n)
	}
	return c.auto(ctx, slug, n)
}

// viaV3 lists job n's artifacts through API v3.
func (c *apiChoice) viaV3(ctx context.Context, slug circleci.Slug, n int64) iter.Seq2[circleci.Artifact, error] {
	return func(yield func(circleci.Artifact, error) bool) {
		id, err := c.jobID(ctx, slug, n)
		if err != nil {
			yield(circleci.Artifact{}, err)
			return
		}
		for a, err := range c.v3.JobArtifacts(ctx, id) {
			if !yield(a, err) || err != nil {
				return
			}
		}
	}
}

// auto lists through API v2, and through v3 when v2's artifacts route
// answers 404 or 410 for this job, which the selection found to exist.
// Where v3 is missing too (CircleCI Server), v2's error is the one
// reported.
func (c *apiChoice) auto(ctx context.Context, slug circleci.Slug, n int64) iter.Seq2[circleci.Artifact, error] {
	return func(yield func(circleci.Artifact, error) bool) {
		listed := false
		for a, err := range c.API.Artifacts(ctx, slug, n) {
			if err != nil {
				if !listed && routeGone(err) {
					c.fallBack(ctx, slug, n, err, yield)
					return
				}
				yield(a, err)
				return
			}
			listed = true
			if !yield(a, nil) {
				return
			}
		}
		c.checkSunset()
	}
}

// routeGone reports a 404 or 410 answer.
func routeGone(err error) bool {
	var e *circleci.Error
	return errors.As(err, &e) && (e.StatusCode == http.StatusNotFound || e.StatusCode == http.StatusGone)
}

// fallBack lists job n through API v3 after v2 answered v2err, and moves
// the rest of the run to v3 once v3 answers.
func (c *apiChoice) fallBack(ctx context.Context, slug circleci.Slug, n int64, v2err error, yield func(circleci.Artifact, error) bool) {
	id, err := c.jobID(ctx, slug, n)
	if err != nil {
		yield(circleci.Artifact{}, v2err)
		return
	}
	answered := false
	for a, err := range c.v3.JobArtifacts(ctx, id) {
		if err != nil {
			if !answered && routeGone(err) {
				err = v2err // no API v3 here either (CircleCI Server)
			}
			yield(a, err)
			return
		}
		if !answered {
			answered = true
			c.switchToV3("API v2's artifact listing answered " + statusOf(v2err))
		}
		if !yield(a, nil) {
			return
		}
	}
	if !answered {
		c.switchToV3("API v2's artifact listing answered " + statusOf(v2err))
	}
}

func statusOf(err error) string {
	var e *circleci.Error
	if errors.As(err, &e) {
		return strconv.Itoa(e.StatusCode) + " " + http.StatusText(e.StatusCode)
	}
	return err.Error()
}

// checkSunset moves the run to API v3 when v2's artifacts route has
// answered with a Sunset date already past.
func (c *apiChoice) checkSunset() {
	if c.deps == nil || c.switched.Load() {
		return
	}
	for _, d := range c.deps.Deprecations() {
		if d.Endpoint == circleci.RouteV2Artifacts && d.SunsetPassed(time.Now()) {
			c.switchToV3("CircleCI set API v2's artifact listing to be removed on " + d.Sunset.UTC().Format(time.DateOnly))
		}
	}
}

// switchToV3 moves the rest of the run's listings to API v3, saying so
// once.
func (c *apiChoice) switchToV3(why string) {
	c.switchOnce.Do(func() {
		c.switched.Store(true)
		c.log.Warn("listing artifacts through API v3 for the rest of the run: "+why+
			" (the mirror stays the same; --api v2 or v3 chooses one)", "api", APIV3)
	})
}

// reportDeprecations logs each notice of deprecation or removal the API
// sent, once.
func (c *apiChoice) reportDeprecations() {
	if c.deps == nil {
		return
	}
	for _, d := range c.deps.Deprecations() {
		args := []any{"endpoint", d.Endpoint}
		if !d.Deprecated.IsZero() {
			args = append(args, "deprecation", d.Deprecated.UTC().Format(time.DateOnly))
		}
		if !d.Sunset.IsZero() {
			args = append(args, "sunset", d.Sunset.UTC().Format(time.DateOnly))
		}
		if d.Link != "" {
			args = append(args, "link", d.Link)
		}
		c.log.Warn(d.String()+": update artifact-sync before then, and see its README on API versions", args...)
	}
}
