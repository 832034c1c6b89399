package report

import (
	"fmt"
	"io"
)

type humanWriter struct {
	w   io.Writer
	err error
}

func (h *humanWriter) printf(format string, args ...any) {
	if h.err == nil {
		_, h.err = fmt.Fprintf(h.w, format, args...)
	}
}

// Object prints one line per violation and per error, grouped by object.
func (h *humanWriter) Object(o *Object) error {
	for _, v := range sortedViolations(o.Violations) {
		action := ""
		if v.EnforcementAction != "deny" {
			action = " (" + v.EnforcementAction + ")"
		}
		h.printf("%s:%d: %s: [%s/%s]%s %s\n", o.File, o.Line, o.ID(), v.ConstraintKind, v.ConstraintName, action, v.Message)
	}
	for _, e := range o.Errors {
		h.printf("%s:%d: %s: error: %s\n", o.File, o.Line, o.ID(), e.Message)
	}
	return h.err
}

func (h *humanWriter) Close(s Summary) error {
	h.printf("%d objects reviewed against %d constraints: %d violations (%d deny, %d warn, %d dryrun) in %d denied objects, %d errors\n",
		s.Objects, s.Constraints, s.Violations, s.Deny, s.Warn, s.DryRun, s.ObjectsDenied, s.Errors)
	if s.Incomplete {
		h.printf("incomplete: the run stopped before the end of its input: %s\n", s.Error)
	}
	return h.err
}
