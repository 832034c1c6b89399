package audit

import (
	"sort"
	"time"
)

// DefaultViolationsLimit caps status.violations, as Gatekeeper's
// --constraint-violations-limit; totalViolations counts all of them.
const DefaultViolationsLimit = 20

// StatusViolation is one entry of a constraint's status.violations, with
// Gatekeeper's field names.
type StatusViolation struct {
	EnforcementAction string `json:"enforcementAction"`
	Group             string `json:"group"`
	Version           string `json:"version"`
	Kind              string `json:"kind"`
	Namespace         string `json:"namespace,omitempty"`
	Name              string `json:"name"`
	Message           string `json:"message"`
}

// ConstraintStatus is the audit's part of a constraint's status.
type ConstraintStatus struct {
	AuditTimestamp  string            `json:"auditTimestamp"`
	TotalViolations int               `json:"totalViolations"`
	Violations      []StatusViolation `json:"violations"`
	// EvaluationErrors counts objects the constraint failed to evaluate.
	EvaluationErrors int `json:"auditEvaluationErrors,omitempty"`
}

// constraintStatuses computes the status of the constraints in want from
// every item. The shown subset is the first limit violations in a fixed
// order (namespace, kind, name, message), so it changes only when the
// violations do.
func constraintStatuses(items []Item, want map[string]bool, limit int, at time.Time) map[string]*ConstraintStatus {
	out := make(map[string]*ConstraintStatus, len(want))
	for id := range want {
		out[id] = &ConstraintStatus{AuditTimestamp: at.UTC().Format(time.RFC3339), Violations: []StatusViolation{}}
	}
	for _, it := range items {
		for _, f := range it.Findings {
			st := out[constraintID(f.ConstraintKind, f.ConstraintName)]
			if st == nil {
				continue
			}
			if f.Action == ActionError {
				st.EvaluationErrors++
				continue
			}
			st.TotalViolations++
			st.Violations = append(st.Violations, StatusViolation{
				EnforcementAction: f.Action, Group: it.Kind.Group, Version: it.Kind.Version, Kind: it.Kind.Kind,
				Namespace: it.Key.Namespace, Name: it.Key.Name, Message: f.Message,
			})
			// Only the first limit are shown: keep a few more than that,
			// not one per finding of the cluster.
			if len(st.Violations) >= 2*limit+16 {
				st.Violations = firstViolations(st.Violations, limit)
			}
		}
	}
	for _, st := range out {
		st.Violations = firstViolations(st.Violations, limit)
	}
	return out
}

// firstViolations sorts v and keeps its first limit entries.
func firstViolations(v []StatusViolation, limit int) []StatusViolation {
	sort.SliceStable(v, func(i, j int) bool {
		a, b := v[i], v[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		if a.Group != b.Group {
			return a.Group < b.Group
		}
		return a.Message < b.Message
	})
	if len(v) > limit {
		v = v[:limit]
	}
	return v
}
