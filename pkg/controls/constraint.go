package controls

import (
	"slices"
	"strings"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FromConstraint is what coverage needs of a constraint as stored, with
// its enforcement action resolved to the one admission applies.
func FromConstraint(c *apis.Constraint) Constraint {
	m := c.Spec.Match
	out := Constraint{
		Kind:               c.Kind,
		Name:               c.Name,
		Action:             AdmissionAction(c.Spec),
		Namespaces:         m.Namespaces,
		ExcludedNamespaces: m.ExcludedNamespaces,
		Selective:          selects(m.LabelSelector) || selects(m.NamespaceSelector) || m.Name != "",
	}
	if v := c.Status.TotalViolations; v != nil {
		out.TotalViolations = int(*v)
	}
	return out
}

// AdmissionAction is the action a constraint takes at admission, the
// point a control is enforced at: for "scoped", deny when any scoped
// action denies at the webhook (or at every point), else the first action
// given there, else dryrun (the constraint acts elsewhere only, audit for
// instance, so admission only watches).
func AdmissionAction(spec apis.ConstraintSpec) string {
	action := strings.ToLower(spec.EnforcementAction)
	if action == "" {
		return apis.ActionDeny
	}
	if action != apis.ActionScoped {
		return action
	}
	var atWebhook []string
	for _, s := range spec.ScopedEnforcementActions {
		if slices.ContainsFunc(s.EnforcementPoints, func(p apis.EnforcementPoint) bool {
			return p.Name == apis.PointWebhook || p.Name == apis.PointAll
		}) {
			atWebhook = append(atWebhook, strings.ToLower(s.Action))
		}
	}
	switch {
	case slices.Contains(atWebhook, apis.ActionDeny):
		return apis.ActionDeny
	case len(atWebhook) > 0:
		return atWebhook[0]
	}
	return apis.ActionDryRun
}

// selects reports whether a selector narrows anything: an empty one
// matches every object.
func selects(s *metav1.LabelSelector) bool {
	return s != nil && (len(s.MatchLabels) > 0 || len(s.MatchExpressions) > 0)
}
