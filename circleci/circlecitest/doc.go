// Package circlecitest is a fake CircleCI: the parts of API v2 that
// artifact-sync uses, an artifact host and presigned storage, served over real
// HTTP on 127.0.0.1, in the spirit of net/http/httptest.
//
// # Model
//
// A [World] holds the state: projects, their pipelines (numbered from 1 per
// project), workflows, build and approval jobs (build jobs numbered from 1 per
// project) and artifacts. It is built with Add methods and may change while it
// is served (statuses, new pipelines, replaced artifacts). IDs are UUIDs and
// timestamps come from a fixed clock, both derived from the order of the Add
// calls. Artifact bytes are never stored: they are a pseudo-random stream
// generated from the seed, the project, job number, node, path and revision,
// so a 3 GB artifact costs nothing until it is read, any byte range can be
// served, and [Artifact.Content] and [Artifact.SHA256] give a test the exact
// bytes to compare with.
//
// A [Server] serves a World on three listeners, three hosts to a client:
//
//   - the API, at Server.URL + "/api/v2": /me, /project/{slug},
//     /project/{slug}/pipeline, /project/{slug}/pipeline/{number},
//     /pipeline/{id}, /pipeline/{id}/workflow, /workflow/{id},
//     /workflow/{id}/job, /project/{slug}/job/{number} and
//     /project/{slug}/{number}/artifacts;
//   - the artifact host, Server.ArtifactURL, at the URLs the API lists:
//     /output/job/<job-uuid>/artifacts/<node>/<path>;
//   - with Options.Redirect, a presigned storage host, Server.StorageURL, to
//     which the artifact host answers 302, like CircleCI sending most files to
//     S3. It must never receive a credential; any it gets is recorded
//     ([Server.LeakedCredentials]).
//
// The Server behaves as the real service is documented and observed to:
// response shapes follow the official OpenAPI documents (the package's
// contract test checks every one with kin-openapi), with only the deviations
// seen in real responses (approval jobs without job_number and with a null
// started_at); lists are pages of {"items", "next_page_token"} with a null
// token on the last page and opaque tokens that need escaping; pipelines and
// workflows come newest first; slugs are accepted with raw or %2F-escaped
// slashes and github/ or bitbucket/ for gh/ and bb/, and answered in the
// short form; the token is accepted as Circle-Token, Bearer or Basic, and
// errors carry the real messages ("You must log in first", "Invalid token
// provided.", "Project not found", "Job not found.", "Not Found").
// Artifact paths are served verbatim, however hostile. Downloads carry
// Content-Length, a strong ETag and Last-Modified and support Range and
// If-Range.
//
// # Testing clients
//
// Options add what a test needs to provoke: small pages, latency, a
// per-connection bandwidth limit, no Range support, public artifacts, and
// HTTPS. With Options.TLS every host speaks TLS with a certificate made for
// the Server ([Server.CertPEM], [Server.CertPool]), and HTTP/2 to clients
// that offer it but on the hosts Options.HTTP1 names (presigned S3 speaks
// only HTTP/1.1). A [FaultFunc] set with [Server.SetFaults] decides per
// request whether to answer an error status (with Retry-After), cut or
// truncate the body after some bytes, stall or never answer; its decisions
// depend only on the request and its attempt number, so runs are
// reproducible. [Server.Outage] takes a
// host away for a while, as a real outage does: its connections are refused
// (nothing listens) or reset, the open ones included; and
// [Server.CutConnections] resets each of a host's connections after so many
// bytes, as a TCP fault proxy in front of it would, which over HTTP/2 fails
// every request the connection carries. Counters and a request
// log ([Server.Requests], [Server.Downloads], [Server.PeakConcurrentDownloads]
// and others) let a test assert on what the client did; the log records for
// each request its protocol, the connection it came over and when it was
// received and answered, and [Server.Connections] and
// [Server.ConnectionsUsed] count connections per host, so a test can tell
// whether a client keeps connections alive or shares one over HTTP/2.
//
// [NewServer] does not need a testing.T, so a benchmark harness can run the
// Server in its own process; [Start] is the convenience for tests.
package circlecitest
