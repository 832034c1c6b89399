package engine

import (
	"fmt"
	"slices"
)

// IndexDiff says how e's GroupKind index, kept up to date one constraint
// at a time, differs from the index rebuilt from e's constraints; empty
// when they agree.
func IndexDiff(e *Engine) string {
	s := e.snap.Load()
	r := s.clone()
	r.reindex()
	names := func(l []*Constraint) []string {
		out := make([]string, len(l))
		for i, c := range l {
			out[i] = c.Kind + "/" + c.Name
		}
		return out
	}
	if a, b := names(s.wildcard), names(r.wildcard); !slices.Equal(a, b) {
		return fmt.Sprintf("wildcard: kept %v, rebuilt %v", a, b)
	}
	if len(s.byGroupKind) != len(r.byGroupKind) {
		return fmt.Sprintf("kept %d group/kinds, rebuilt %d", len(s.byGroupKind), len(r.byGroupKind))
	}
	for gk, l := range r.byGroupKind {
		if a, b := names(s.byGroupKind[gk]), names(l); !slices.Equal(a, b) {
			return fmt.Sprintf("%v: kept %v, rebuilt %v", gk, a, b)
		}
		for i := range l {
			if s.byGroupKind[gk][i] != l[i] {
				return fmt.Sprintf("%v: kept a stale %s", gk, names(l)[i])
			}
		}
	}
	return ""
}
