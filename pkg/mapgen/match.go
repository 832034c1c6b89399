package mapgen

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/match"
)

// The namespace a mutator's namespaces and excludedNamespaces are checked
// against: a Namespace's own name, else the object's namespace, as in
// pkg/match.
const namespaceName = `(request.kind.group == "" && request.kind.kind == "Namespace" ? object.metadata.?name.orValue("") : request.namespace)`

// matchOf writes applyTo and spec.match as matchConstraints (resource
// rules from applyTo, scope, labelSelector as objectSelector,
// namespaceSelector) and matchConditions (match.kinds, namespaces and
// excludedNamespaces with their globs, and name).
func matchOf(in *apis.Mutator) (*admissionregistrationv1.MatchResources, []admissionregistrationv1.MatchCondition) {
	m := in.Spec.Match
	scope := admissionregistrationv1.AllScopes
	switch m.Scope {
	case "Cluster":
		scope = admissionregistrationv1.ClusterScope
	case "Namespaced":
		scope = admissionregistrationv1.NamespacedScope
	}
	mr := &admissionregistrationv1.MatchResources{}
	if m.LabelSelector != nil {
		mr.ObjectSelector = m.LabelSelector.DeepCopy()
	}
	if m.NamespaceSelector != nil {
		mr.NamespaceSelector = m.NamespaceSelector.DeepCopy()
	}
	rule := func(ops []admissionregistrationv1.OperationType, groups, versions, resources []string) admissionregistrationv1.NamedRuleWithOperations {
		return admissionregistrationv1.NamedRuleWithOperations{RuleWithOperations: admissionregistrationv1.RuleWithOperations{
			Operations: ops,
			Rule:       admissionregistrationv1.Rule{APIGroups: groups, APIVersions: versions, Resources: resources, Scope: &scope},
		}}
	}
	createUpdate := []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update}
	var conditions []admissionregistrationv1.MatchCondition
	if in.Kind == apis.KindAssignMetadata {
		// AssignMetadata has no applyTo: match.kinds says where it goes.
		for _, k := range m.Kinds {
			groups := k.APIGroups
			if len(groups) == 0 || slices.Contains(groups, match.Wildcard) {
				groups = []string{"*"}
			}
			resources := []string{"*"}
			if len(k.Kinds) > 0 && !slices.Contains(k.Kinds, match.Wildcard) {
				resources = nil
				for _, kind := range k.Kinds {
					resources = append(resources, engine.Plural(kind))
				}
			}
			mr.ResourceRules = append(mr.ResourceRules, rule(createUpdate, groups, []string{"*"}, resources))
		}
		if len(mr.ResourceRules) == 0 {
			mr.ResourceRules = append(mr.ResourceRules, rule(createUpdate, []string{"*"}, []string{"*"}, []string{"*"}))
		}
	} else {
		for _, a := range in.Spec.ApplyTo {
			ops := createUpdate
			if len(a.Operations) > 0 && !slices.Contains(a.Operations, "*") {
				ops = nil
				for _, op := range a.Operations {
					ops = append(ops, admissionregistrationv1.OperationType(op))
				}
			}
			var resources []string
			for _, kind := range a.Kinds {
				resources = append(resources, engine.Plural(kind))
			}
			mr.ResourceRules = append(mr.ResourceRules, rule(ops, a.Groups, a.Versions, resources))
		}
		// Resources are named by a plural guessed from the kind; the
		// condition holds the policy to the kinds applyTo names.
		var alts []string
		for _, a := range in.Spec.ApplyTo {
			alts = append(alts, fmt.Sprintf("(request.kind.group in %s && request.kind.version in %s && request.kind.kind in %s)",
				stringList(a.Groups), stringList(a.Versions), stringList(a.Kinds)))
		}
		conditions = append(conditions, condition("apply-to", strings.Join(alts, " || ")))
		if len(m.Kinds) > 0 {
			var alts []string
			for _, k := range m.Kinds {
				var parts []string
				if len(k.APIGroups) > 0 && !slices.Contains(k.APIGroups, match.Wildcard) {
					parts = append(parts, "request.kind.group in "+stringList(k.APIGroups))
				}
				if len(k.Kinds) > 0 && !slices.Contains(k.Kinds, match.Wildcard) {
					parts = append(parts, "request.kind.kind in "+stringList(k.Kinds))
				}
				if len(parts) == 0 {
					parts = []string{"true"}
				}
				alts = append(alts, "("+strings.Join(parts, " && ")+")")
			}
			conditions = append(conditions, condition("match-kinds", strings.Join(alts, " || ")))
		}
	}
	if len(m.Namespaces) > 0 {
		conditions = append(conditions, condition("match-namespaces",
			fmt.Sprintf("%s == \"\" || %s", namespaceName, anyGlob(namespaceName, m.Namespaces))))
	}
	if len(m.ExcludedNamespaces) > 0 {
		conditions = append(conditions, condition("match-excluded-namespaces",
			fmt.Sprintf("%s == \"\" || !(%s)", namespaceName, anyGlob(namespaceName, m.ExcludedNamespaces))))
	}
	if m.Name != "" {
		conditions = append(conditions, condition("match-name", glob(`object.metadata.?name.orValue("")`, m.Name)))
	}
	return mr, conditions
}

func condition(name, expr string) admissionregistrationv1.MatchCondition {
	return admissionregistrationv1.MatchCondition{Name: conditionPrefix + name, Expression: expr}
}

func stringList(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = strconv.Quote(v)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func anyGlob(s string, patterns []string) string {
	alts := make([]string, len(patterns))
	for i, p := range patterns {
		alts[i] = glob(s, p)
	}
	return strings.Join(alts, " || ")
}

// glob is the CEL of match.Glob(pattern, s): '*' only at either end.
func glob(s, pattern string) string {
	prefix := strings.HasSuffix(pattern, "*")
	suffix := strings.HasPrefix(pattern, "*")
	core := strconv.Quote(strings.TrimSuffix(strings.TrimPrefix(pattern, "*"), "*"))
	switch {
	case pattern == "*":
		return "true"
	case prefix && suffix:
		return s + ".contains(" + core + ")"
	case prefix:
		return s + ".startsWith(" + core + ")"
	case suffix:
		return s + ".endsWith(" + core + ")"
	default:
		return s + " == " + core
	}
}
