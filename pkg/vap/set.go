package vap

import (
	"context"
	"errors"
	"fmt"
	"sort"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"

	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/engine/cel"
)

// Set is every compiled policy of an input, evaluated together. Safe for
// concurrent use: each Evaluate converts the review once for all policies.
type Set struct {
	policies []*Policy
}

// CompileSet compiles policies and binds bindings to them. A binding that
// names no given policy is an error (offline, it is almost always a typo).
func CompileSet(policies []*admissionregistrationv1.ValidatingAdmissionPolicy, bindings []*admissionregistrationv1.ValidatingAdmissionPolicyBinding, params Params) (*Set, error) {
	var errs []error
	names := map[string]bool{}
	s := &Set{}
	for _, p := range policies {
		if names[p.Name] {
			errs = append(errs, fmt.Errorf("ValidatingAdmissionPolicy %q is defined twice", p.Name))
			continue
		}
		names[p.Name] = true
		cp, err := Compile(p, bindings, params)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.policies = append(s.policies, cp)
	}
	seen := map[string]bool{}
	for _, b := range bindings {
		if seen[b.Name] {
			errs = append(errs, fmt.Errorf("ValidatingAdmissionPolicyBinding %q is defined twice", b.Name))
		}
		seen[b.Name] = true
		if !names[b.Spec.PolicyName] {
			errs = append(errs, fmt.Errorf("ValidatingAdmissionPolicyBinding %q: spec.policyName %q names no ValidatingAdmissionPolicy in the input", b.Name, b.Spec.PolicyName))
		}
	}
	sort.Slice(s.policies, func(i, j int) bool { return s.policies[i].Name() < s.policies[j].Name() })
	return s, errors.Join(errs...)
}

// Policies returns the compiled policies, by name.
func (s *Set) Policies() []*Policy { return s.policies }

// Bindings counts the bindings that belong to a compiled policy.
func (s *Set) Bindings() int {
	if s == nil {
		return 0
	}
	n := 0
	for _, p := range s.policies {
		n += len(p.bindings)
	}
	return n
}

// Name is the engine.PolicyDriver name of every Set: an engine holds one.
func (s *Set) Name() string { return Kind }

// Evaluate reviews an object against every policy, as an engine's policy
// driver. A review the policies cannot read (its object does not convert)
// is an error of every policy that could have matched it.
func (s *Set) Evaluate(ctx context.Context, r *engine.Review, recordMatched bool) *engine.Response {
	if s == nil || s.Bindings() == 0 {
		return nil
	}
	resp := &engine.Response{}
	req, err := cel.NewRequest(r)
	if err != nil {
		for _, p := range s.policies {
			if len(p.bindings) > 0 {
				resp.Errors = append(resp.Errors, &engine.EvalError{ConstraintKind: Kind, ConstraintName: p.Name(), Err: err})
			}
		}
		return resp
	}
	for _, p := range s.policies {
		if len(p.bindings) == 0 {
			continue
		}
		p.evaluate(ctx, req, r, recordMatched, resp)
	}
	return resp
}

var _ engine.PolicyDriver = (*Set)(nil)
