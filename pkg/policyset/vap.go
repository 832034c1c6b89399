package policyset

import (
	"errors"
	"fmt"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"

	"github.com/bouncer-policy/bouncer/pkg/load"
	"github.com/bouncer-policy/bouncer/pkg/vap"
)

// HasVAPs reports whether the set holds ValidatingAdmissionPolicies or
// bindings.
func (s *Set) HasVAPs() bool { return len(s.VAPs) > 0 || len(s.VAPBindings) > 0 }

// LoadVAPs compiles the set's ValidatingAdmissionPolicies with their
// bindings; params supplies the objects paramRefs select. Problems are
// reported together, prefixed with file:line where one document is at fault.
func (s *Set) LoadVAPs(params vap.Params) (*vap.Set, error) {
	var errs []error
	var policies []*admissionregistrationv1.ValidatingAdmissionPolicy
	var bindings []*admissionregistrationv1.ValidatingAdmissionPolicyBinding
	failed := map[string]bool{} // policies already reported
	for _, d := range s.VAPs {
		p := &admissionregistrationv1.ValidatingAdmissionPolicy{}
		if err := load.Into(d, p); err != nil {
			errs = append(errs, err)
			continue
		}
		if _, err := vap.Compile(p, nil, params); err != nil {
			errs = append(errs, located(d, err))
			failed[p.Name] = true
			continue
		}
		policies = append(policies, p)
	}
	for _, d := range s.VAPBindings {
		b := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{}
		if err := load.Into(d, b); err != nil {
			errs = append(errs, err)
			continue
		}
		if !failed[b.Spec.PolicyName] {
			bindings = append(bindings, b)
		}
	}
	set, err := vap.CompileSet(policies, bindings, params)
	if err != nil {
		errs = append(errs, fmt.Errorf("%w", err))
	}
	return set, errors.Join(errs...)
}
