package fleet

import (
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Detail is one cluster's status with the templates and constraints its
// counts come from: what the dashboard shows per constraint and what
// controls coverage is computed on.
type Detail struct {
	Status      ClusterStatus
	Templates   []Template
	Constraints []Constraint
	// Exempt are the namespaces admission never reviews: kube-system, the
	// Config's own namespace (Bouncer's) and the Config's excludedNamespaces
	// for the webhook.
	Exempt []string
}

// Template is what the dashboard needs of a ConstraintTemplate.
type Template struct {
	Name string `json:"name"`
	// Kind is the constraint kind it creates (spec.crd.spec.names.kind).
	Kind string `json:"kind"`
	// Annotations are the template's bouncer.dev/ annotations (severity,
	// standards, CVEs); the others are left out.
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Constraint is one constraint with its audit results.
type Constraint struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
	// Template names the ConstraintTemplate of Kind; empty when none is
	// served (a constraint left behind).
	Template string `json:"template"`
	// Action is spec.enforcementAction, "deny" when unset.
	Action string `json:"enforcementAction"`
	// Namespaces and ExcludedNamespaces are spec.match's.
	Namespaces         []string `json:"namespaces,omitempty"`
	ExcludedNamespaces []string `json:"excludedNamespaces,omitempty"`
	// Selective is set when spec.match narrows by labelSelector,
	// namespaceSelector or name, so it covers only some objects.
	Selective bool `json:"selective,omitempty"`
	// TotalViolations is status.totalViolations; Violations the entries
	// the audit lists (capped, --constraint-violations-limit).
	TotalViolations int         `json:"totalViolations"`
	Violations      []Violation `json:"violations,omitempty"`
	// Annotations are the template's bouncer.dev/ annotations.
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Severity is the template's bouncer.dev/severity, empty when unset.
func (c Constraint) Severity() string { return c.Annotations["bouncer.dev/severity"] }

// Violation is one entry of a constraint's status.violations.
type Violation struct {
	Kind              string `json:"kind"`
	Namespace         string `json:"namespace,omitempty"`
	Name              string `json:"name"`
	Message           string `json:"message"`
	EnforcementAction string `json:"enforcementAction"`
}

func templateInfo(u unstructured.Unstructured) Template {
	t := Template{Name: u.GetName()}
	t.Kind, _, _ = unstructured.NestedString(u.Object, "spec", "crd", "spec", "names", "kind")
	for k, v := range u.GetAnnotations() {
		if strings.HasPrefix(k, "bouncer.dev/") {
			if t.Annotations == nil {
				t.Annotations = map[string]string{}
			}
			t.Annotations[k] = v
		}
	}
	return t
}

func constraintInfo(u unstructured.Unstructured, kind string, tmpl Template) Constraint {
	c := Constraint{Kind: kind, Name: u.GetName(), Template: tmpl.Name, Annotations: tmpl.Annotations}
	c.Action, _, _ = unstructured.NestedString(u.Object, "spec", "enforcementAction")
	if c.Action == "" {
		c.Action = "deny"
	}
	c.Namespaces, _, _ = unstructured.NestedStringSlice(u.Object, "spec", "match", "namespaces")
	c.ExcludedNamespaces, _, _ = unstructured.NestedStringSlice(u.Object, "spec", "match", "excludedNamespaces")
	for _, f := range []string{"labelSelector", "namespaceSelector", "name"} {
		if v, found, _ := unstructured.NestedFieldNoCopy(u.Object, "spec", "match", f); found && v != nil {
			c.Selective = true
		}
	}
	c.TotalViolations, _ = nestedInt(u.Object, "status", "totalViolations")
	vs, _, _ := unstructured.NestedSlice(u.Object, "status", "violations")
	for _, v := range vs {
		m, ok := v.(map[string]any)
		if !ok {
			continue
		}
		str := func(k string) string { s, _ := m[k].(string); return s }
		c.Violations = append(c.Violations, Violation{Kind: str("kind"), Namespace: str("namespace"), Name: str("name"),
			Message: str("message"), EnforcementAction: str("enforcementAction")})
	}
	return c
}

// exemptNamespaces reads the Configs named config: Bouncer (like
// Gatekeeper) exempts their namespace and kube-system always, and the
// excludedNamespaces of match entries whose processes include the webhook.
func exemptNamespaces(configs []unstructured.Unstructured) []string {
	out := []string{"kube-system"}
	for _, cfg := range configs {
		if cfg.GetName() != "config" {
			continue
		}
		out = append(out, cfg.GetNamespace())
		matches, _, _ := unstructured.NestedSlice(cfg.Object, "spec", "match")
		for _, m := range matches {
			entry, _ := m.(map[string]any)
			procs, _, _ := unstructured.NestedStringSlice(entry, "processes")
			if !slices.Contains(procs, "*") && !slices.Contains(procs, "webhook") {
				continue
			}
			ns, _, _ := unstructured.NestedStringSlice(entry, "excludedNamespaces")
			out = append(out, ns...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
