// Package report writes review outcomes in the formats CI systems read:
// human text, JSON, YAML, SARIF 2.1.0 and JUnit XML. Writers receive one
// object at a time and keep only what their format needs, so memory grows
// with the number of findings, not with the number of objects reviewed.
package report

import (
	"fmt"
	"io"
	"sort"

	"github.com/bouncer-policy/bouncer/pkg/engine"
)

// Object is the outcome of reviewing one object.
type Object struct {
	File       string                 `json:"file"`
	Line       int                    `json:"line"`
	APIVersion string                 `json:"apiVersion"`
	Kind       string                 `json:"kind"`
	Namespace  string                 `json:"namespace,omitempty"`
	Name       string                 `json:"name"`
	Violations []engine.Result        `json:"violations,omitempty"`
	Errors     []Error                `json:"errors,omitempty"`
	Matched    []engine.ConstraintRef `json:"-"`
}

// Error is a policy that could not be evaluated for an object, or (with no
// constraint) a review that could not be made at all.
type Error struct {
	ConstraintKind string `json:"constraintKind,omitempty"`
	ConstraintName string `json:"constraintName,omitempty"`
	Message        string `json:"message"`
}

// ErrorsOf turns a review's outcome into report errors.
func ErrorsOf(reviewErr error, evalErrs []*engine.EvalError) []Error {
	var out []Error
	if reviewErr != nil {
		out = append(out, Error{Message: reviewErr.Error()})
	}
	for _, e := range evalErrs {
		out = append(out, Error{ConstraintKind: e.ConstraintKind, ConstraintName: e.ConstraintName, Message: e.Error()})
	}
	return out
}

// policy names the constraint of an error, or "" for none.
func (e Error) policy() string {
	if e.ConstraintKind == "" && e.ConstraintName == "" {
		return ""
	}
	return e.ConstraintKind + "/" + e.ConstraintName
}

// ID is "Kind ns/name" or "Kind name".
func (o *Object) ID() string {
	if o.Namespace != "" {
		return fmt.Sprintf("%s %s/%s", o.Kind, o.Namespace, o.Name)
	}
	return fmt.Sprintf("%s %s", o.Kind, o.Name)
}

// Summary counts the whole run.
type Summary struct {
	Objects     int `json:"objects"`
	Constraints int `json:"constraints"`
	Violations  int `json:"violations"`
	Deny        int `json:"deny"`
	Warn        int `json:"warn"`
	DryRun      int `json:"dryrun"`
	Errors      int `json:"errors"`
	// ObjectsDenied counts objects with at least one deny violation.
	ObjectsDenied int `json:"objectsDenied"`
	// Incomplete is set when the run stopped before reviewing its whole
	// input (an input error, an interrupt); Error says why. The counts
	// cover what was reviewed.
	Incomplete bool   `json:"incomplete,omitempty"`
	Error      string `json:"error,omitempty"`
}

// Fail marks the summary of a run that stopped early.
func (s *Summary) Fail(err error) {
	s.Incomplete = true
	if err != nil {
		s.Error = err.Error()
	}
}

// Add counts one object's outcome.
func (s *Summary) Add(o *Object) {
	s.Objects++
	denied := false
	for _, v := range o.Violations {
		s.Violations++
		switch v.EnforcementAction {
		case "deny":
			s.Deny++
			denied = true
		case "warn":
			s.Warn++
		case "dryrun":
			s.DryRun++
		}
	}
	s.Errors += len(o.Errors)
	if denied {
		s.ObjectsDenied++
	}
}

// Writer receives outcomes in input order and writes its format on Close.
// Close is called once per run, also when the run stopped early (the
// summary says so): every format then still writes a well-formed document.
type Writer interface {
	Object(o *Object) error
	Close(s Summary) error
}

// Formats lists the accepted --output values.
var Formats = []string{"human", "json", "yaml", "sarif", "junit"}

// New returns the writer for a format.
func New(format string, w io.Writer, tool ToolInfo) (Writer, error) {
	switch format {
	case "human", "":
		return &humanWriter{w: w}, nil
	case "json":
		return &jsonWriter{w: w}, nil
	case "yaml":
		return &yamlWriter{w: w}, nil
	case "sarif":
		return &sarifWriter{w: w, tool: tool, rules: map[string]int{}}, nil
	case "junit":
		return &junitWriter{w: w}, nil
	}
	return nil, fmt.Errorf("unknown output format %q (want one of %v)", format, Formats)
}

// ToolInfo describes Bouncer for formats that name the tool.
type ToolInfo struct {
	Name    string
	Version string
	URI     string
	// Constraints describes every loaded constraint, for SARIF rules.
	Constraints []ConstraintInfo
}

// ConstraintInfo describes one constraint for reports.
type ConstraintInfo struct {
	Kind              string
	Name              string
	Template          string
	Title             string
	Description       string
	EnforcementAction string
}

func sortedViolations(vs []engine.Result) []engine.Result {
	out := append([]engine.Result(nil), vs...)
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].ConstraintKind != out[j].ConstraintKind {
			return out[i].ConstraintKind < out[j].ConstraintKind
		}
		if out[i].ConstraintName != out[j].ConstraintName {
			return out[i].ConstraintName < out[j].ConstraintName
		}
		return out[i].Message < out[j].Message
	})
	return out
}
