package sync

import (
	"strings"
	"testing"
)

func TestCleanPath(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{in: "dist/app.tgz", want: "dist/app.tgz"},
		{in: "a/./b//c", want: "a/b/c"},
		{in: "a/../b", want: "b"},
		{in: "a..b/c", want: "a..b/c"},
		{in: "spaces in name.txt", want: "spaces in name.txt"},
		{in: "résumé/データ.txt", want: "résumé/データ.txt"},
		{in: "", err: "empty"},
		{in: "/etc/passwd", err: "absolute"},
		{in: "../../x", err: "leaves"},
		{in: "a/../../b", err: "leaves"},
		{in: "..", err: "leaves"},
		{in: "..\\..\\x", err: "backslash"},
		{in: "a\x00b", err: "NUL"},
		{in: ".", err: "destination itself"},
		{in: "a/..", err: "destination itself"},
	}
	for _, tt := range tests {
		got, err := CleanPath(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("CleanPath(%q) = %q, %v; want error containing %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("CleanPath(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestParseLayout(t *testing.T) {
	for _, bad := range []struct{ in, err string }{
		{"", "empty"},
		{"{job_number}/{nope}/{path}", "unknown placeholder {nope}"},
		{"{job_number/{path}", "unknown placeholder"},
		{"{job_number}/{path", "unclosed"},
		{"job}/{path}", "unmatched"},
		{"{job_number}/{node_index}", "must contain {path}"},
		// Layouts whose fixed text leaves DEST or reaches the tool's own
		// folder are refused up front, not per artifact at run time.
		{"/{job_number}/{node_index}/{path}", "starts with '/'"},
		{"../{path}", "'..' element"},
		{"{job_number}/../../{path}", "'..' element"},
		{"./{path}", "'.' element"},
		{"{job_number}//{path}", "empty"},
		{".artifact-sync/{path}", "keeps for itself"},
		{".Artifact-Sync./{job_number}/{path}", "keeps for itself"},
		{"{path}/", "empty"},
	} {
		if _, err := ParseLayout(bad.in); err == nil || !strings.Contains(err.Error(), bad.err) {
			t.Errorf("ParseLayout(%q) error = %v, want one containing %q", bad.in, err, bad.err)
		}
	}
}

func TestLayoutExpand(t *testing.T) {
	a := &Artifact{
		Job: Job{Project: "gh/acme/widgets", Branch: "feature/x", PipelineNumber: 42, PipelineID: "p-id",
			WorkflowName: "build", WorkflowID: "w-id", JobName: "test", JobNumber: 1234},
		NodeIndex: 3, Path: "./out/report.xml", CleanPath: "out/report.xml",
	}
	tests := []struct{ layout, want string }{
		{DefaultLayout, "1234/3/out/report.xml"},
		{"{project}/{branch}/{pipeline_number}/{workflow_name}/{job_name}/{node_index}/{path}", "gh/acme/widgets/feature/x/42/build/test/3/out/report.xml"},
		{"{pipeline_id}-{workflow_id}/{path}", "p-id-w-id/out/report.xml"},
		{"archive/{job_number}.{node_index}/{path}", "archive/1234.3/out/report.xml"},
	}
	for _, tt := range tests {
		l, err := ParseLayout(tt.layout)
		if err != nil {
			t.Fatalf("ParseLayout(%q): %v", tt.layout, err)
		}
		if got := l.Expand(a); got != tt.want {
			t.Errorf("Expand(%q) = %q, want %q", tt.layout, got, tt.want)
		}
	}
}

func TestCheckKey(t *testing.T) {
	for _, k := range []string{".artifact-sync/manifest/x", ".artifact-sync", ".ARTIFACT-SYNC/lock", ".Artifact-Sync. /x", "a/../b", "/abs", ""} {
		if err := checkKey(k); err == nil {
			t.Errorf("checkKey(%q) = nil, want refusal", k)
		}
	}
	for _, k := range []string{"1/0/a..b", "1/0/.artifact-syncx", "1/0/dir/.artifact-sync/x"} {
		if err := checkKey(k); err != nil {
			t.Errorf("checkKey(%q) = %v, want ok", k, err)
		}
	}
}
