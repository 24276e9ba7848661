package sync

import (
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLayoutPath checks the promise that keeps a hostile artifact list from
// writing outside the destination or over the tool's own state: whatever the
// artifact path, the layout and the values CircleCI fills into it (branch,
// job and workflow names are free text), CleanPath, Expand and checkKey
// either refuse the artifact or give a key that, joined to DEST, stays
// strictly inside DEST and outside DEST/.artifact-sync — compared without
// regard to case, since macOS and Windows file systems ignore it.
func FuzzLayoutPath(f *testing.F) {
	f.Add(DefaultLayout, "dist/app.tgz", "gh/acme/widgets", "main", "build", "test", int64(12), int64(0))
	f.Add(DefaultLayout, "../../etc/passwd", "gh/acme/widgets", "main", "build", "test", int64(12), int64(0))
	f.Add(DefaultLayout, "a/../../b", "gh/acme/widgets", "main", "build", "test", int64(-1), int64(-7))
	f.Add("{path}", ".artifact-sync/manifest/manifest.json", "gh/acme/widgets", "main", "build", "test", int64(1), int64(0))
	f.Add("{path}", "./.artifact-sync/lock", "gh/acme/widgets", "main", "build", "test", int64(1), int64(0))
	f.Add("{path}", "x/../.artifact-sync", "gh/acme/widgets", "main", "build", "test", int64(1), int64(0))
	f.Add("{branch}/{path}", "a.txt", "gh/acme/widgets", "../../..", "build", "test", int64(1), int64(0))
	f.Add("{job_name}/{path}", "a.txt", "gh/acme/widgets", "main", "build", ".artifact-sync", int64(1), int64(0))
	f.Add("{workflow_name}{path}", "a.txt", "gh/acme/widgets", "main", "/", "test", int64(1), int64(0))
	f.Add("{project}/{branch}/{pipeline_number}/{workflow_name}/{job_name}/{node_index}/{path}", "r\\..\\x", "circleci/x/y", "", "", "", int64(0), int64(0))
	f.Add("{path}", "a\x00b", "gh/acme/widgets", "main", "build", "test", int64(1), int64(0))
	f.Add("/{path}", "a", "gh/acme/widgets", "main", "build", "test", int64(1), int64(0))

	dest := filepath.Join(string(filepath.Separator)+"dest", "mirror")
	f.Fuzz(func(t *testing.T, layout, p, project, branch, workflow, jobName string, jobNumber, node int64) {
		l, err := ParseLayout(layout)
		if err != nil {
			return
		}
		clean, err := CleanPath(p)
		if err != nil {
			return
		}
		a := &Artifact{
			Job:       Job{Project: project, Branch: branch, WorkflowName: workflow, JobName: jobName, JobNumber: jobNumber},
			NodeIndex: node, Path: p, CleanPath: clean,
		}
		key := l.Expand(a)
		if checkKey(key) != nil {
			return
		}
		full := filepath.Clean(filepath.Join(dest, filepath.FromSlash(key)))
		rel, err := filepath.Rel(dest, full)
		if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			t.Fatalf("layout %q, path %q: key %q lands on %s, outside %s", layout, p, key, full, dest)
		}
		first, _, _ := strings.Cut(filepath.ToSlash(rel), "/")
		if strings.EqualFold(first, StateDir) {
			t.Fatalf("layout %q, path %q: key %q lands in the tool's own %s/", layout, p, key, StateDir)
		}
	})
}
