package vap

import (
	"fmt"
	"slices"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/engine/cel"
)

// NamePrefix starts the names of generated policies and bindings, as in
// Gatekeeper.
const NamePrefix = "gatekeeper-"

// Match conditions of generated policies: the parts of a constraint's
// spec.match that a binding's matchResources cannot express (globs in
// namespaces, excludedNamespaces and name; scope), read from the
// constraint, which is the binding's parameter object. Cluster-scoped
// objects pass the namespace conditions, as in Gatekeeper.
var generatedConditions = []admissionregistrationv1.MatchCondition{
	{Name: cel.ReservedPrefix + "match_namespaces", Expression: `
!has(params.spec) || !has(params.spec.match) || !has(params.spec.match.namespaces) ||
(object != null ? object : oldObject).metadata.?namespace.orValue("") == "" ||
params.spec.match.namespaces.exists(g, (object != null ? object : oldObject).metadata.namespace.matches("^" + g.replace("*", ".*") + "$"))`},
	{Name: cel.ReservedPrefix + "match_excluded_namespaces", Expression: `
!has(params.spec) || !has(params.spec.match) || !has(params.spec.match.excludedNamespaces) ||
(object != null ? object : oldObject).metadata.?namespace.orValue("") == "" ||
!params.spec.match.excludedNamespaces.exists(g, (object != null ? object : oldObject).metadata.namespace.matches("^" + g.replace("*", ".*") + "$"))`},
	{Name: cel.ReservedPrefix + "match_name", Expression: `
!has(params.spec) || !has(params.spec.match) || !has(params.spec.match.name) ||
(object != null ? object : oldObject).metadata.?name.orValue("").matches("^" + params.spec.match.name.replace("*", ".*") + "$") ||
(params.spec.match.name.endsWith("*") && (object != null ? object : oldObject).metadata.?generateName.orValue("") != "" &&
 (object != null ? object : oldObject).metadata.generateName.matches("^" + params.spec.match.name.replace("*", ".*") + "$"))`},
	{Name: cel.ReservedPrefix + "match_scope", Expression: `
!has(params.spec) || !has(params.spec.match) || !has(params.spec.match.scope) ||
params.spec.match.scope == "*" ||
(params.spec.match.scope == "Namespaced") == (request.namespace != "")`},
}

// FromTemplate generates the ValidatingAdmissionPolicy of a template with
// K8sNativeValidation code: named gatekeeper-<template>, paramKind the
// constraint kind in constraints.gatekeeper.sh/v1beta1, variables anyObject
// and params first (params bound to params.spec.parameters), then the
// template's own; matchConstraints every resource on CREATE and UPDATE
// (bindings narrow it); the template's match conditions plus those above.
func FromTemplate(t *apis.ConstraintTemplate) (*admissionregistrationv1.ValidatingAdmissionPolicy, error) {
	var code *apis.Code
	if len(t.Spec.Targets) == 1 {
		for i := range t.Spec.Targets[0].Code {
			if t.Spec.Targets[0].Code[i].Engine == apis.EngineCEL {
				code = &t.Spec.Targets[0].Code[i]
				break
			}
		}
	}
	if code == nil {
		return nil, fmt.Errorf("template %q has no %s code", t.Name, apis.EngineCEL)
	}
	src, err := cel.DecodeSource(*code)
	if err != nil {
		return nil, fmt.Errorf("template %q: %w", t.Name, err)
	}
	// What does not compile as a template would not compile in the
	// apiserver either: refuse it here, with the template's own field names.
	if _, err := cel.New().Compile(t, *code); err != nil {
		return nil, fmt.Errorf("template %q: %w", t.Name, err)
	}
	fp, _ := src.FailurePolicyType()
	kind := t.Spec.CRD.Spec.Names.Kind
	p := &admissionregistrationv1.ValidatingAdmissionPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: admissionregistrationv1.SchemeGroupVersion.String(), Kind: "ValidatingAdmissionPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: NamePrefix + t.Name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			ParamKind: &admissionregistrationv1.ParamKind{APIVersion: apis.ConstraintsGroup + "/v1beta1", Kind: kind},
			MatchConstraints: &admissionregistrationv1.MatchResources{
				ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
					RuleWithOperations: admissionregistrationv1.RuleWithOperations{
						Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
						Rule:       admissionregistrationv1.Rule{APIGroups: []string{"*"}, APIVersions: []string{"*"}, Resources: []string{"*"}},
					},
				}},
			},
			FailurePolicy: &fp,
			Variables:     src.AllVariables(),
		},
	}
	for _, m := range src.MatchConditions {
		p.Spec.MatchConditions = append(p.Spec.MatchConditions, admissionregistrationv1.MatchCondition{Name: m.Name, Expression: m.Expression})
	}
	for _, m := range generatedConditions {
		m.Expression = strings.TrimSpace(m.Expression)
		p.Spec.MatchConditions = append(p.Spec.MatchConditions, m)
	}
	for _, v := range src.Validations {
		p.Spec.Validations = append(p.Spec.Validations, admissionregistrationv1.Validation{Expression: v.Expression, Message: v.Message, MessageExpression: v.MessageExpression})
	}
	if _, err := Compile(p, nil, nil); err != nil {
		return nil, fmt.Errorf("template %q: the generated policy does not compile: %w", t.Name, err)
	}
	return p, nil
}

// FromConstraint generates the binding of a constraint: named
// gatekeeper-<constraint>, paramRef to the constraint (Allow when it is
// missing), matchResources from spec.match (kinds as resource rules,
// labelSelector as objectSelector, namespaceSelector, and namespaces and
// excludedNamespaces without globs as a selector on the
// kubernetes.io/metadata.name label), validationActions from the
// enforcement action (deny → Deny, warn → Warn, dryrun → Audit; scoped:
// the actions whose enforcementPoints include vap.k8s.io or *).
func FromConstraint(c *apis.Constraint) (*admissionregistrationv1.ValidatingAdmissionPolicyBinding, error) {
	id := c.Kind + "/" + c.Name
	actions, err := validationActions(c.Spec)
	if err != nil {
		return nil, fmt.Errorf("constraint %s: %w", id, err)
	}
	allow := admissionregistrationv1.AllowAction
	b := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: admissionregistrationv1.SchemeGroupVersion.String(), Kind: "ValidatingAdmissionPolicyBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: NamePrefix + c.Name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        NamePrefix + strings.ToLower(c.Kind),
			ParamRef:          &admissionregistrationv1.ParamRef{Name: c.Name, ParameterNotFoundAction: &allow},
			ValidationActions: actions,
		},
	}
	m := c.Spec.Match
	mr := &admissionregistrationv1.MatchResources{ObjectSelector: m.LabelSelector}
	if m.NamespaceSelector != nil {
		mr.NamespaceSelector = m.NamespaceSelector.DeepCopy()
	}
	addNames := func(op metav1.LabelSelectorOperator, names []string) {
		if len(names) == 0 || hasGlob(names) {
			return // left to the policy's match conditions
		}
		if mr.NamespaceSelector == nil {
			mr.NamespaceSelector = &metav1.LabelSelector{}
		}
		mr.NamespaceSelector.MatchExpressions = append(mr.NamespaceSelector.MatchExpressions,
			metav1.LabelSelectorRequirement{Key: "kubernetes.io/metadata.name", Operator: op, Values: names})
	}
	addNames(metav1.LabelSelectorOpIn, m.Namespaces)
	addNames(metav1.LabelSelectorOpNotIn, m.ExcludedNamespaces)
	for _, k := range m.Kinds {
		groups := k.APIGroups
		if len(groups) == 0 || slices.Contains(groups, "*") {
			groups = []string{"*"}
		}
		resources := []string{"*"}
		if len(k.Kinds) > 0 && !slices.Contains(k.Kinds, "*") {
			resources = nil
			for _, kind := range k.Kinds {
				resources = append(resources, engine.Plural(kind))
			}
		}
		mr.ResourceRules = append(mr.ResourceRules, admissionregistrationv1.NamedRuleWithOperations{
			RuleWithOperations: admissionregistrationv1.RuleWithOperations{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.OperationAll},
				Rule:       admissionregistrationv1.Rule{APIGroups: groups, APIVersions: []string{"*"}, Resources: resources},
			},
		})
	}
	if mr.ObjectSelector != nil || mr.NamespaceSelector != nil || len(mr.ResourceRules) > 0 {
		b.Spec.MatchResources = mr
	}
	return b, nil
}

func validationActions(spec apis.ConstraintSpec) ([]admissionregistrationv1.ValidationAction, error) {
	one := func(a string) (admissionregistrationv1.ValidationAction, error) {
		switch strings.ToLower(a) {
		case "", apis.ActionDeny:
			return admissionregistrationv1.Deny, nil
		case apis.ActionWarn:
			return admissionregistrationv1.Warn, nil
		case apis.ActionDryRun:
			return admissionregistrationv1.Audit, nil
		}
		return "", fmt.Errorf("enforcement action %q has no ValidatingAdmissionPolicy equivalent", a)
	}
	if !strings.EqualFold(spec.EnforcementAction, apis.ActionScoped) {
		a, err := one(spec.EnforcementAction)
		if err != nil {
			return nil, err
		}
		return []admissionregistrationv1.ValidationAction{a}, nil
	}
	var out []admissionregistrationv1.ValidationAction
	for _, s := range spec.ScopedEnforcementActions {
		for _, p := range s.EnforcementPoints {
			if p.Name != apis.PointVAP && p.Name != apis.PointAll {
				continue
			}
			a, err := one(s.Action)
			if err != nil {
				return nil, err
			}
			if !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no scopedEnforcementActions apply at %s", apis.PointVAP)
	}
	return out, nil
}

func hasGlob(names []string) bool {
	for _, n := range names {
		if strings.Contains(n, "*") {
			return true
		}
	}
	return false
}
