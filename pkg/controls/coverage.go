package controls

import (
	"slices"
	"strings"
)

// Status is how far one target covers one control.
type Status string

const (
	// Enforced: a deny constraint covers every namespace but the
	// documented exemptions, and reports no violations.
	Enforced Status = "enforced"
	// EnforcedWithViolations: enforced, but audit found objects that
	// predate the constraint and break it.
	EnforcedWithViolations Status = "enforced-with-violations"
	// Monitored: only warn or dryrun constraints.
	Monitored Status = "monitored"
	// Partial: denied only in some namespaces.
	Partial Status = "partial"
	// Missing: no constraint of a template mapped to the control.
	Missing Status = "missing"
)

// Template is what coverage needs of a ConstraintTemplate.
type Template struct {
	Name string
	// Kind is the constraint kind the template creates.
	Kind        string
	Annotations map[string]string
}

// Constraint is what coverage needs of a constraint.
type Constraint struct {
	Kind string
	Name string
	// Action is spec.enforcementAction; empty means deny.
	Action string
	// Namespaces and ExcludedNamespaces are spec.match's; no Namespaces
	// means every namespace.
	Namespaces         []string
	ExcludedNamespaces []string
	// Selective is set when spec.match narrows by labelSelector,
	// namespaceSelector or name: it then covers only some objects of every
	// namespace, which counts as partial.
	Selective bool
	// TotalViolations is status.totalViolations.
	TotalViolations int
}

// Target is one policy directory or cluster.
type Target struct {
	Name        string
	Templates   []Template
	Constraints []Constraint
	// Exempt are the namespaces the Config exempts from admission; a
	// constraint that excludes only these still covers "all namespaces".
	Exempt []string
}

// Result is one target's coverage of one control.
type Result struct {
	Status Status `json:"status"`
	// Constraints are "Kind/name" of the constraints that count.
	Constraints []string `json:"constraints,omitempty"`
}

// Cover computes the target's status for one control of a standard.
func Cover(t Target, s Standard, controlID string) Result {
	if c, ok := s.Control(controlID); ok && c.AnyConstraint {
		return coverBy(t, func(Constraint) bool { return true })
	}
	kinds := map[string]bool{}
	for _, tmpl := range t.Templates {
		if slices.Contains(splitIDs(tmpl.Annotations[s.Annotation()]), controlID) {
			kinds[strings.ToLower(tmpl.Kind)] = true
		}
	}
	return coverBy(t, func(c Constraint) bool { return kinds[strings.ToLower(c.Kind)] })
}

// Protecting returns the deny constraints, covering all namespaces but
// the exemptions, of templates whose annotation lists value (a CVE id
// under bouncer.dev/cves, for instance).
func Protecting(t Target, annotation, value string) []string {
	r := CoverValue(t, annotation, value)
	if r.Status != Enforced && r.Status != EnforcedWithViolations {
		return nil
	}
	return r.Constraints
}

// CoverValue is Cover for the templates whose annotation lists value,
// compared case-insensitively as CVE ids are.
func CoverValue(t Target, annotation, value string) Result {
	kinds := map[string]bool{}
	for _, tmpl := range t.Templates {
		if slices.ContainsFunc(splitIDs(tmpl.Annotations[annotation]), func(v string) bool { return strings.EqualFold(v, value) }) {
			kinds[strings.ToLower(tmpl.Kind)] = true
		}
	}
	return coverBy(t, func(c Constraint) bool { return kinds[strings.ToLower(c.Kind)] })
}

func coverBy(t Target, counts func(Constraint) bool) Result {
	var all, scoped, monitor []Constraint
	for _, c := range t.Constraints {
		if !counts(c) {
			continue
		}
		switch {
		case !isDeny(c):
			monitor = append(monitor, c)
		case coversAll(c, t.Exempt):
			all = append(all, c)
		default:
			scoped = append(scoped, c)
		}
	}
	switch {
	case len(all) > 0:
		status := Enforced
		for _, c := range all {
			if c.TotalViolations > 0 {
				status = EnforcedWithViolations
			}
		}
		return Result{Status: status, Constraints: names(all)}
	case len(scoped) > 0:
		return Result{Status: Partial, Constraints: names(scoped)}
	case len(monitor) > 0:
		return Result{Status: Monitored, Constraints: names(monitor)}
	}
	return Result{Status: Missing}
}

func isDeny(c Constraint) bool {
	return c.Action == "" || strings.EqualFold(c.Action, "deny")
}

func coversAll(c Constraint, exempt []string) bool {
	if c.Selective {
		return false
	}
	if len(c.Namespaces) > 0 && !slices.Contains(c.Namespaces, "*") {
		return false
	}
	for _, ns := range c.ExcludedNamespaces {
		if !exemptCovers(exempt, ns) {
			return false
		}
	}
	return true
}

// exemptCovers reports whether the exemptions cover ns, an entry of a
// constraint's excludedNamespaces. Exemptions may be globs, prefix* or
// *suffix, as Gatekeeper's Config and bouncer serve's are; an excluded
// glob counts only when an exemption glob is at least as wide.
func exemptCovers(exempt []string, ns string) bool {
	for _, e := range exempt {
		switch {
		case e == ns:
			return true
		case strings.HasSuffix(e, "*") && strings.HasPrefix(strings.TrimSuffix(ns, "*"), strings.TrimSuffix(e, "*")) && !strings.HasPrefix(ns, "*"):
			return true
		case strings.HasPrefix(e, "*") && strings.HasSuffix(strings.TrimPrefix(ns, "*"), strings.TrimPrefix(e, "*")) && !strings.HasSuffix(ns, "*"):
			return true
		}
	}
	return false
}

func names(cs []Constraint) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Kind + "/" + c.Name
	}
	return out
}

func splitIDs(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
