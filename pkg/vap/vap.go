// Package vap evaluates native ValidatingAdmissionPolicies and their
// bindings (admissionregistration.k8s.io/v1) offline, with the apiserver's
// own code: the policy is compiled as the ValidatingAdmissionPolicy plugin
// compiles it (via engine/cel), matchConstraints and binding matchResources
// go through k8s.io/apiserver's matching package, and its validator turns
// expressions into decisions. What the apiserver gets from informers
// (Namespaces and parameter objects) comes from the review and from a
// Params store. Results are engine.Results, so every entry point reports
// them like constraint violations: ConstraintKind is
// "ValidatingAdmissionPolicy", ConstraintName the binding, Template the
// policy, and validationActions Deny, Warn, Audit become deny, warn, dryrun.
//
// The package also generates policies and bindings from K8sNativeValidation
// templates and their constraints (generate.go), as Gatekeeper does.
// It does not depend on the CLI or on any API client.
package vap

import (
	"context"
	"errors"
	"fmt"
	"sort"

	celgo "github.com/google/cel-go/cel"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/admission/plugin/policy/generic"
	"k8s.io/apiserver/pkg/admission/plugin/policy/matching"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	corelisters "k8s.io/client-go/listers/core/v1"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/engine/cel"
)

var (
	boolType     = []*celgo.Type{celgo.BoolType}
	stringType   = []*celgo.Type{celgo.StringType}
	stringOrNull = []*celgo.Type{celgo.StringType, celgo.NullType}
)

// Kind is the ConstraintKind of every result this package reports.
const Kind = "ValidatingAdmissionPolicy"

// Policy is a compiled ValidatingAdmissionPolicy with its bindings.
type Policy struct {
	policy    *admissionregistrationv1.ValidatingAdmissionPolicy
	bindings  []*admissionregistrationv1.ValidatingAdmissionPolicyBinding
	validator validating.Validator
	params    Params
}

// Compile checks and compiles a policy and the bindings that name it.
// Defaults are applied as the apiserver applies them (failurePolicy Fail,
// matchPolicy Equivalent, empty selectors, rule scope *). params supplies
// parameter objects; it may be nil when the policy has no paramKind.
func Compile(policy *admissionregistrationv1.ValidatingAdmissionPolicy, bindings []*admissionregistrationv1.ValidatingAdmissionPolicyBinding, params Params) (*Policy, error) {
	p := policy.DeepCopy()
	name := p.Name
	if name == "" {
		return nil, errors.New("ValidatingAdmissionPolicy has no metadata.name")
	}
	defaultPolicy(p)
	if p.Spec.MatchConstraints == nil {
		return nil, fmt.Errorf("ValidatingAdmissionPolicy %q: spec.matchConstraints is required", name)
	}
	if len(p.Spec.Validations) == 0 && len(p.Spec.AuditAnnotations) == 0 {
		return nil, fmt.Errorf("ValidatingAdmissionPolicy %q: spec.validations or spec.auditAnnotations is required", name)
	}
	if p.Spec.ParamKind != nil {
		if _, err := schema.ParseGroupVersion(p.Spec.ParamKind.APIVersion); err != nil || p.Spec.ParamKind.Kind == "" {
			return nil, fmt.Errorf("ValidatingAdmissionPolicy %q: spec.paramKind needs apiVersion and kind", name)
		}
	}
	switch *p.Spec.FailurePolicy {
	case admissionregistrationv1.Fail, admissionregistrationv1.Ignore:
	default:
		return nil, fmt.Errorf("ValidatingAdmissionPolicy %q: spec.failurePolicy: %q is not Fail or Ignore", name, *p.Spec.FailurePolicy)
	}
	if err := cel.Check(cel.Decls{Params: p.Spec.ParamKind != nil, Authorizer: true}, policyExprs(p)); err != nil {
		return nil, fmt.Errorf("ValidatingAdmissionPolicy %q: spec.%w", name, err)
	}
	v, err := cel.NewValidator(cel.Spec{
		Name:             name,
		HasParams:        p.Spec.ParamKind != nil,
		Variables:        p.Spec.Variables,
		Validations:      p.Spec.Validations,
		MatchConditions:  p.Spec.MatchConditions,
		AuditAnnotations: p.Spec.AuditAnnotations,
		FailurePolicy:    *p.Spec.FailurePolicy,
		Authorizer:       true,
	})
	if err != nil {
		return nil, fmt.Errorf("ValidatingAdmissionPolicy %q: %w", name, err)
	}
	out := &Policy{policy: p, validator: v, params: params}
	for _, b := range bindings {
		b = b.DeepCopy()
		if b.Spec.PolicyName != name {
			continue
		}
		if err := checkBinding(b, p); err != nil {
			return nil, err
		}
		out.bindings = append(out.bindings, b)
	}
	sort.Slice(out.bindings, func(i, j int) bool { return out.bindings[i].Name < out.bindings[j].Name })
	return out, nil
}

// Name is the policy's name.
func (p *Policy) Name() string { return p.policy.Name }

// Bindings lists the names of the policy's bindings.
func (p *Policy) Bindings() []string {
	out := make([]string, len(p.bindings))
	for i, b := range p.bindings {
		out[i] = b.Name
	}
	return out
}

func checkBinding(b *admissionregistrationv1.ValidatingAdmissionPolicyBinding, p *admissionregistrationv1.ValidatingAdmissionPolicy) error {
	id := fmt.Sprintf("ValidatingAdmissionPolicyBinding %q", b.Name)
	if b.Name == "" {
		return errors.New("ValidatingAdmissionPolicyBinding has no metadata.name")
	}
	if len(b.Spec.ValidationActions) == 0 {
		return fmt.Errorf("%s: spec.validationActions is required", id)
	}
	for i, a := range b.Spec.ValidationActions {
		switch a {
		case admissionregistrationv1.Deny, admissionregistrationv1.Warn, admissionregistrationv1.Audit:
		default:
			return fmt.Errorf("%s: spec.validationActions[%d]: %q is not Deny, Warn or Audit", id, i, a)
		}
	}
	if r := b.Spec.ParamRef; r != nil {
		if (r.Name == "") == (r.Selector == nil) {
			return fmt.Errorf("%s: spec.paramRef needs exactly one of name and selector", id)
		}
		if p.Spec.ParamKind == nil {
			return fmt.Errorf("%s: spec.paramRef is set but policy %q has no paramKind", id, p.Name)
		}
	}
	if m := b.Spec.MatchResources; m != nil {
		defaultMatch(m)
	}
	return nil
}

func defaultPolicy(p *admissionregistrationv1.ValidatingAdmissionPolicy) {
	if p.Spec.FailurePolicy == nil {
		f := admissionregistrationv1.Fail
		p.Spec.FailurePolicy = &f
	}
	if p.Spec.MatchConstraints != nil {
		defaultMatch(p.Spec.MatchConstraints)
	}
}

func defaultMatch(m *admissionregistrationv1.MatchResources) {
	if m.NamespaceSelector == nil {
		m.NamespaceSelector = &metav1.LabelSelector{}
	}
	if m.ObjectSelector == nil {
		m.ObjectSelector = &metav1.LabelSelector{}
	}
	if m.MatchPolicy == nil {
		e := admissionregistrationv1.Equivalent
		m.MatchPolicy = &e
	}
}

func policyExprs(p *admissionregistrationv1.ValidatingAdmissionPolicy) []cel.Expr {
	var out []cel.Expr
	for i, v := range p.Spec.Variables {
		out = append(out, cel.Expr{Field: fmt.Sprintf("variables[%d] (%s).expression", i, v.Name), Expression: v.Expression, Variable: v.Name})
	}
	for i, m := range p.Spec.MatchConditions {
		out = append(out, cel.Expr{Field: fmt.Sprintf("matchConditions[%d] (%s).expression", i, m.Name), Expression: m.Expression, Returns: boolType})
	}
	for i, v := range p.Spec.Validations {
		out = append(out, cel.Expr{Field: fmt.Sprintf("validations[%d].expression", i), Expression: v.Expression, Returns: boolType})
		if v.MessageExpression != "" {
			out = append(out, cel.Expr{Field: fmt.Sprintf("validations[%d].messageExpression", i), Expression: v.MessageExpression, Returns: stringType})
		}
	}
	for i, a := range p.Spec.AuditAnnotations {
		out = append(out, cel.Expr{Field: fmt.Sprintf("auditAnnotations[%d].valueExpression", i), Expression: a.ValueExpression, Returns: stringOrNull})
	}
	return out
}

// evaluate reviews an object against the policy and every binding of it,
// with the apiserver's semantics, adding the results to resp: a policy or
// binding that does not match is skipped; each parameter object the binding
// selects is one evaluation; failed validations are reported with each of
// the binding's validationActions; configuration errors (a missing
// parameter with parameterNotFoundAction Deny, ...) and evaluation errors
// deny under failurePolicy Fail and are dropped under Ignore. With
// recordMatched, every matching binding goes to resp.Matched.
func (p *Policy) evaluate(ctx context.Context, req *cel.Request, r *engine.Review, recordMatched bool, resp *engine.Response) {
	m := generic.NewPolicyMatcher(matching.NewMatcher(namespaceLister{req: req, review: r}, nil))
	attrs := req.Attributes.Attributes
	configError := func(b string, err error) {
		if *p.policy.Spec.FailurePolicy == admissionregistrationv1.Ignore {
			return
		}
		what := "policy"
		if b != "" {
			what = "binding"
		}
		resp.Results = append(resp.Results, p.result(b, fmt.Sprintf("failed to configure %s: %v", what, err), []string{apis.ActionDeny}))
	}
	ok, resource, _, err := m.DefinitionMatches(attrs, objectInterfaces{}, validating.NewValidatingAdmissionPolicyAccessor(p.policy))
	if err != nil {
		configError("", err)
		return
	}
	if !ok {
		return
	}
	for _, b := range p.bindings {
		ok, err := m.BindingMatches(attrs, objectInterfaces{}, validating.NewValidatingAdmissionPolicyBindingAccessor(b))
		if err != nil {
			configError(b.Name, err)
			continue
		}
		if !ok {
			continue
		}
		if recordMatched {
			resp.Matched = append(resp.Matched, engine.ConstraintRef{Kind: Kind, Name: b.Name})
		}
		resp.Evaluated++
		params, err := p.collectParams(b, r.Namespace)
		if err != nil {
			configError(b.Name, err)
			continue
		}
		actions := actionsOf(b)
		for _, param := range params {
			var po runtime.Object
			if param != nil {
				po = param
			}
			res := p.validator.Validate(ctx, resource, req.Attributes, po, req.Namespace, celconfig.RuntimeCELCostBudget, nil)
			for _, d := range res.Decisions {
				if d.Action != validating.ActionDeny {
					continue
				}
				// Evaluation errors under Fail are deny decisions too, and
				// Kubernetes routes them through validationActions as well.
				resp.Results = append(resp.Results, p.result(b.Name, d.Message, actions))
			}
			for _, a := range res.AuditAnnotations {
				if a.Action == validating.AuditAnnotationActionError {
					resp.Results = append(resp.Results, p.result(b.Name, a.Error, []string{apis.ActionDeny}))
				}
			}
		}
	}
}

func (p *Policy) result(binding, msg string, actions []string) engine.Result {
	if binding == "" {
		binding = p.policy.Name // the policy itself is at fault
	}
	r := engine.Result{
		ConstraintKind:    Kind,
		ConstraintName:    binding,
		Template:          p.policy.Name,
		Message:           msg,
		EnforcementAction: strongest(actions),
	}
	if len(actions) > 1 {
		r.ScopedActions = actions
	}
	return r
}

// actionsOf maps validationActions to Bouncer's enforcement actions.
func actionsOf(b *admissionregistrationv1.ValidatingAdmissionPolicyBinding) []string {
	var out []string
	for _, a := range b.Spec.ValidationActions {
		switch a {
		case admissionregistrationv1.Deny:
			out = append(out, apis.ActionDeny)
		case admissionregistrationv1.Warn:
			out = append(out, apis.ActionWarn)
		case admissionregistrationv1.Audit:
			out = append(out, apis.ActionDryRun)
		}
	}
	return out
}

func strongest(actions []string) string {
	rank := map[string]int{apis.ActionDryRun: 1, apis.ActionWarn: 2, apis.ActionDeny: 3}
	best := ""
	for _, a := range actions {
		if rank[a] > rank[best] {
			best = a
		}
	}
	return best
}

// collectParams finds the parameter objects of a binding for a request in
// namespace, as the apiserver's CollectParams does with its informer.
func (p *Policy) collectParams(b *admissionregistrationv1.ValidatingAdmissionPolicyBinding, namespace string) ([]*unstructured.Unstructured, error) {
	kind := p.policy.Spec.ParamKind
	ref := b.Spec.ParamRef
	if kind == nil || ref == nil {
		return []*unstructured.Unstructured{nil}, nil
	}
	if p.params == nil {
		return nil, fmt.Errorf("paramKind %s %s: no parameter objects were given", kind.APIVersion, kind.Kind)
	}
	gv, _ := schema.ParseGroupVersion(kind.APIVersion)
	gvk := gv.WithKind(kind.Kind)
	namespaced := ref.Namespace != "" || p.params.Namespaced(gvk)
	ns := ""
	if namespaced {
		ns = ref.Namespace
		if ns == "" {
			ns = namespace
		}
		if ns == "" {
			return nil, errors.New("cannot use namespaced paramRef in policy binding that matches cluster-scoped resources")
		}
	}
	var found []*unstructured.Unstructured
	switch {
	case ref.Name != "":
		if o := p.params.Get(gvk, ns, ref.Name); o != nil {
			found = append(found, o)
		}
	default:
		sel, err := metav1.LabelSelectorAsSelector(ref.Selector)
		if err != nil {
			return nil, err
		}
		found = p.params.List(gvk, ns, sel)
	}
	if len(found) == 0 && ref.ParameterNotFoundAction != nil && *ref.ParameterNotFoundAction == admissionregistrationv1.DenyAction {
		return nil, errors.New("no params found for policy binding with `Deny` parameterNotFoundAction")
	}
	return found, nil
}

// namespaceLister answers the matcher's Namespace look-ups from the review:
// its Namespace object, or one that carries only the name label.
type namespaceLister struct {
	req    *cel.Request
	review *engine.Review
}

func (l namespaceLister) List(labels.Selector) ([]*corev1.Namespace, error) {
	if l.req.Namespace == nil {
		return nil, nil
	}
	return []*corev1.Namespace{l.req.Namespace}, nil
}

func (l namespaceLister) Get(name string) (*corev1.Namespace, error) {
	if l.req.Namespace != nil && l.req.Namespace.Name == name {
		return l.req.Namespace, nil
	}
	if l.review.NamespaceObject != nil && name == l.review.Namespace {
		return cel.NamespaceFrom(l.review.NamespaceObject, name)
	}
	if name == "" {
		return nil, apierrors.NewNotFound(corev1.Resource("namespaces"), name)
	}
	return cel.NamespaceFrom(nil, name)
}

var _ corelisters.NamespaceLister = namespaceLister{}

// objectInterfaces serves the matcher's equivalent-resource look-ups; with
// no API discovery offline there are no equivalents, so rules match the
// request's own group, version and resource.
type objectInterfaces struct{}

var equivalents = runtime.NewEquivalentResourceRegistry()

func (objectInterfaces) GetObjectCreater() runtime.ObjectCreater     { return nil }
func (objectInterfaces) GetObjectTyper() runtime.ObjectTyper         { return nil }
func (objectInterfaces) GetObjectDefaulter() runtime.ObjectDefaulter { return nil }
func (objectInterfaces) GetObjectConvertor() runtime.ObjectConvertor { return nil }
func (objectInterfaces) GetEquivalentResourceMapper() runtime.EquivalentResourceMapper {
	return equivalents
}

var _ admission.ObjectInterfaces = objectInterfaces{}
