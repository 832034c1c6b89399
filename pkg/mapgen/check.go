package mapgen

import (
	"context"
	"errors"
	"fmt"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
	plugincel "k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/admission/plugin/policy/mutating/patch"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/matchconditions"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/apiserver/pkg/cel/environment"

	"github.com/bouncer-policy/bouncer/pkg/engine"
)

// Policy is a MutatingAdmissionPolicy compiled as the apiserver's
// MutatingAdmissionPolicy plugin compiles it.
type Policy struct {
	policy   *admissionregistrationv1.MutatingAdmissionPolicy
	matcher  matchconditions.Matcher
	patchers []patch.Patcher
	compiler *plugincel.CompositedCompiler
}

// Check compiles a policy's match conditions and mutations and returns
// every compilation error.
func Check(p *admissionregistrationv1.MutatingAdmissionPolicy) error {
	_, err := Compile(p)
	return err
}

// Compile compiles a policy's match conditions and JSONPatch and
// ApplyConfiguration mutations with the apiserver's CEL environment (the
// stored-expressions one, which the apiserver uses for policies it holds).
func Compile(p *admissionregistrationv1.MutatingAdmissionPolicy) (*Policy, error) {
	opts := plugincel.OptionalVariableDeclarations{HasParams: p.Spec.ParamKind != nil, HasAuthorizer: true}
	compiler, err := plugincel.NewCompositedCompiler(environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()))
	if err != nil {
		return nil, fmt.Errorf("CEL compiler: %w", err)
	}
	var errs []error
	for _, v := range p.Spec.Variables {
		r := compiler.CompileAndStoreVariable(&validating.Variable{Name: v.Name, Expression: v.Expression}, opts, environment.StoredExpressions)
		if r.Error != nil {
			errs = append(errs, fmt.Errorf("spec.variables %s: %w", v.Name, r.Error))
		}
	}
	out := &Policy{policy: p, compiler: compiler}
	if len(p.Spec.MatchConditions) > 0 {
		acc := make([]plugincel.ExpressionAccessor, len(p.Spec.MatchConditions))
		for i := range p.Spec.MatchConditions {
			acc[i] = (*matchconditions.MatchCondition)(&p.Spec.MatchConditions[i])
		}
		cond := compiler.CompileCondition(acc, opts, environment.StoredExpressions)
		for _, err := range cond.CompilationErrors() {
			errs = append(errs, fmt.Errorf("spec.matchConditions: %w", err))
		}
		out.matcher = matchconditions.NewMatcher(cond, p.Spec.FailurePolicy, "policy", "mutate", p.Name)
	}
	popts := opts
	popts.HasPatchTypes = true
	if len(p.Spec.Mutations) == 0 {
		errs = append(errs, errors.New("spec.mutations: at least one mutation is required"))
	}
	for i, m := range p.Spec.Mutations {
		var ev plugincel.MutatingEvaluator
		switch {
		case m.PatchType == admissionregistrationv1.PatchTypeJSONPatch && m.JSONPatch != nil:
			ev = compiler.CompileMutatingEvaluator(&patch.JSONPatchCondition{Expression: m.JSONPatch.Expression}, popts, environment.StoredExpressions)
			out.patchers = append(out.patchers, patch.NewJSONPatcher(ev))
		case m.PatchType == admissionregistrationv1.PatchTypeApplyConfiguration && m.ApplyConfiguration != nil:
			ev = compiler.CompileMutatingEvaluator(&patch.ApplyConfigurationCondition{Expression: m.ApplyConfiguration.Expression}, popts, environment.StoredExpressions)
			out.patchers = append(out.patchers, patch.NewApplyConfigurationPatcher(ev))
		default:
			errs = append(errs, fmt.Errorf("spec.mutations[%d]: patchType %q without its expression", i, m.PatchType))
			continue
		}
		for _, err := range ev.CompilationErrors() {
			errs = append(errs, fmt.Errorf("spec.mutations[%d]: %w", i, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("MutatingAdmissionPolicy %q: %w", p.Name, err)
	}
	return out, nil
}

// Apply runs the policy's match conditions and mutations on obj, as the
// apiserver would for a request of the given operation (CREATE or UPDATE)
// in namespace ns (nil for cluster-scoped objects); matchConstraints are
// not evaluated. It returns the mutated copy and whether the match
// conditions held. Only JSONPatch mutations run: apply configurations need
// the cluster's OpenAPI schemas.
func (p *Policy) Apply(ctx context.Context, obj *unstructured.Unstructured, ns *corev1.Namespace, operation string) (*unstructured.Unstructured, bool, error) {
	gvk := obj.GroupVersionKind()
	gvr := schema.GroupVersionResource{Group: gvk.Group, Version: gvk.Version, Resource: engine.Plural(gvk.Kind)}
	op := admission.Operation(operation)
	if op == "" {
		op = admission.Create
	}
	ctx = p.compiler.CreateContext(ctx)
	scheme := runtime.NewScheme()
	attrs := func(o runtime.Object) *admission.VersionedAttributes {
		var opts runtime.Object = &metav1.CreateOptions{}
		if op == admission.Update {
			opts = &metav1.UpdateOptions{}
		}
		a := admission.NewAttributesRecord(o, nil, gvk, obj.GetNamespace(), obj.GetName(), gvr, "", op, opts, false, nil)
		return &admission.VersionedAttributes{Attributes: a, VersionedKind: gvk, VersionedObject: admission.NewLazyObject(o)}
	}
	if p.matcher != nil {
		r := p.matcher.Match(ctx, attrs(obj), nil, nil)
		if r.Error != nil {
			return nil, false, fmt.Errorf("match conditions of %s: %w", p.policy.Name, r.Error)
		}
		if !r.Matches {
			return obj, false, nil
		}
	}
	var cur runtime.Object = obj.DeepCopy()
	for i, pt := range p.patchers {
		if p.policy.Spec.Mutations[i].PatchType != admissionregistrationv1.PatchTypeJSONPatch {
			return nil, true, fmt.Errorf("%s: mutation %d: only JSONPatch mutations are applied offline", p.policy.Name, i)
		}
		next, err := pt.Patch(ctx, patch.Request{
			MatchedResource:     gvr,
			VersionedAttributes: attrs(cur),
			ObjectInterfaces:    admission.NewObjectInterfacesFromScheme(scheme),
			OptionalVariables:   plugincel.OptionalVariableBindings{},
			Namespace:           ns,
		}, celconfig.RuntimeCELCostBudget)
		if err != nil {
			return nil, true, fmt.Errorf("%s: mutation %d: %w", p.policy.Name, i, err)
		}
		cur = next
	}
	u, ok := cur.(*unstructured.Unstructured)
	if !ok {
		return nil, true, fmt.Errorf("%s: the patched object is a %T", p.policy.Name, cur)
	}
	return u, true, nil
}
