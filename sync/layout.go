package sync

import (
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/artifact-sync/artifact-sync/sink"
)

// DefaultLayout is where each artifact lands under the destination unless
// --layout says otherwise.
const DefaultLayout = "{job_number}/{node_index}/{path}"

// placeholders lists every name a layout may use, in the order cli.md gives.
var placeholders = []string{
	"project", "branch", "pipeline_number", "pipeline_id", "workflow_name",
	"workflow_id", "job_name", "job_number", "node_index", "path",
}

// Layout is a parsed --layout template.
type Layout struct {
	text  string
	parts []layoutPart
}

type layoutPart struct {
	literal string
	name    string // placeholder name; empty for a literal
}

// ParseLayout parses a layout template such as "{job_number}/{node_index}/{path}".
// Unknown placeholders and unbalanced braces are errors that list the valid names.
func ParseLayout(s string) (*Layout, error) {
	if s == "" {
		return nil, errors.New("--layout is empty: give a template such as " + DefaultLayout)
	}
	l := &Layout{text: s}
	rest := s
	for rest != "" {
		i := strings.IndexAny(rest, "{}")
		if i < 0 {
			l.parts = append(l.parts, layoutPart{literal: rest})
			break
		}
		if i > 0 {
			l.parts = append(l.parts, layoutPart{literal: rest[:i]})
		}
		if rest[i] == '}' {
			return nil, fmt.Errorf("--layout %q: unmatched '}': placeholders are written {name}", s)
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return nil, fmt.Errorf("--layout %q: unclosed '{': placeholders are written {name}", s)
		}
		name := rest[i+1 : i+j]
		if !knownPlaceholder(name) {
			return nil, fmt.Errorf("--layout %q: unknown placeholder {%s}: use one of {%s}", s, name, strings.Join(placeholders, "} {"))
		}
		l.parts = append(l.parts, layoutPart{name: name})
		rest = rest[i+j+1:]
	}
	if !l.Uses("path") {
		return nil, fmt.Errorf("--layout %q: must contain {path}, or every artifact of a job would land on one key", s)
	}
	if err := l.checkFixed(); err != nil {
		return nil, fmt.Errorf("--layout %q: %w", s, err)
	}
	return l, nil
}

// checkFixed refuses, before any request, a layout whose fixed text would
// send every artifact out of the destination or into the tool's own
// folder: a leading '/', a '..' or '.' element, an empty element, or a
// first element that is .artifact-sync. Placeholders stand for one safe
// segment here; the values they take are checked per artifact.
func (l *Layout) checkFixed() error {
	var b strings.Builder
	for _, p := range l.parts {
		if p.name != "" {
			b.WriteString("x")
		} else {
			b.WriteString(p.literal)
		}
	}
	skel := b.String()
	if strings.HasPrefix(skel, "/") {
		return errors.New("starts with '/'; a layout is relative to --to: drop the leading '/'")
	}
	for _, elem := range strings.Split(skel, "/") {
		switch elem {
		case "..":
			return errors.New("has a '..' element, which would leave --to; use a layout inside it, such as " + DefaultLayout)
		case ".", "":
			return errors.New("has an empty or '.' element; separate placeholders with single '/'")
		}
	}
	if err := sink.ValidKey(skel); err != nil {
		return err
	}
	if checkKey(skel) != nil {
		return fmt.Errorf("puts artifacts in %s/, which artifact-sync keeps for itself; choose another first folder", StateDir)
	}
	return nil
}

func knownPlaceholder(name string) bool {
	for _, p := range placeholders {
		if p == name {
			return true
		}
	}
	return false
}

// Uses reports whether the layout contains the placeholder name.
func (l *Layout) Uses(name string) bool {
	for _, p := range l.parts {
		if p.name == name {
			return true
		}
	}
	return false
}

// Disjoint reports whether the layout keeps the artifacts of every job node
// apart by construction: its keys are a folder that names the job and the
// node unambiguously, then {path}. Then no two artifacts of different job
// nodes can land on one key, or need one name as a file and as a folder,
// so each job's plan can be made, and its transfers started, as soon as its
// own listing ends.
//
// The folder's text before {path} may hold only fixed text, {project}
// (the same for every artifact of a run), and {job_number}, {node_index}
// and {pipeline_number}, each followed by fixed text that does not start
// with a digit (so "{job_number}{node_index}" does not qualify: 1 and 12
// would read as 11 and 2). Such a folder has the same number of '/' for
// every artifact, so two different folders differ in a whole element.
func (l *Layout) Disjoint() bool {
	n := len(l.parts)
	if n < 2 || l.parts[n-1].name != "path" || l.parts[n-2].name != "" || !strings.HasSuffix(l.parts[n-2].literal, "/") {
		return false
	}
	var job, node bool
	for i, p := range l.parts[:n-1] {
		switch p.name {
		case "", "project":
		case "job_number", "node_index", "pipeline_number":
			next := l.parts[i+1]
			if next.name != "" || next.literal[0] >= '0' && next.literal[0] <= '9' {
				return false
			}
			job = job || p.name == "job_number"
			node = node || p.name == "node_index"
		default:
			return false // values that differ per job and may hold '/'
		}
	}
	return job && node
}

// String returns the template as given.
func (l *Layout) String() string { return l.text }

// Expand fills in the template for one artifact. The artifact path must have
// been cleaned by CleanPath already. The result is not yet checked as a key.
func (l *Layout) Expand(a *Artifact) string {
	var b strings.Builder
	for _, p := range l.parts {
		if p.name == "" {
			b.WriteString(p.literal)
			continue
		}
		b.WriteString(a.value(p.name))
	}
	return b.String()
}

func (a *Artifact) value(name string) string {
	switch name {
	case "project":
		return a.Project
	case "branch":
		if a.Branch == "" {
			return "_"
		}
		return a.Branch
	case "pipeline_number":
		return strconv.FormatInt(a.PipelineNumber, 10)
	case "pipeline_id":
		return orUnderscore(a.PipelineID)
	case "workflow_name":
		return orUnderscore(a.WorkflowName)
	case "workflow_id":
		return orUnderscore(a.WorkflowID)
	case "job_name":
		return orUnderscore(a.JobName)
	case "job_number":
		return strconv.FormatInt(a.JobNumber, 10)
	case "node_index":
		return strconv.FormatInt(a.NodeIndex, 10)
	case "path":
		return a.CleanPath
	}
	return ""
}

func orUnderscore(s string) string {
	if s == "" {
		return "_"
	}
	return s
}

// CleanPath checks an artifact path as the API returned it and returns the
// cleaned relative path to write it under. A path that is empty, absolute,
// contains NUL or a backslash, or would leave the destination after cleaning
// is refused: such an artifact is reported and never written.
func CleanPath(p string) (string, error) {
	switch {
	case p == "":
		return "", errors.New("empty artifact path")
	case strings.ContainsRune(p, 0):
		return "", errors.New("artifact path contains NUL")
	case strings.HasPrefix(p, "/"):
		return "", errors.New("absolute artifact path")
	case strings.ContainsRune(p, '\\'):
		return "", errors.New("artifact path contains a backslash")
	}
	c := path.Clean(p)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", errors.New("artifact path leaves the destination")
	}
	if c == "." {
		return "", errors.New("artifact path names the destination itself")
	}
	return c, nil
}
