package mapgen

import (
	"errors"
	"fmt"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/mutation"
)

// NamePrefix starts the names of generated policies and bindings.
const NamePrefix = "bouncer-"

// Labels and annotations on generated objects: the manager label tells
// them apart from hand-written policies, the mutator annotation names the
// mutator (Kind/name) a policy was generated from.
const (
	ManagedByLabel     = "app.kubernetes.io/managed-by"
	ManagedByValue     = "bouncer"
	MutatorAnnotation  = "bouncer.dev/mutator"
	conditionPrefix    = "bouncer-"
	defaultFailureMode = admissionregistrationv1.Fail
)

// ErrUnsupported is wrapped by every *UnsupportedError.
var ErrUnsupported = errors.New("cannot be expressed as a MutatingAdmissionPolicy")

// UnsupportedError names a mutator, or the part of it, that has no
// MutatingAdmissionPolicy form, and why.
type UnsupportedError struct {
	Mutator mutation.ID
	// Part is the field of the mutator that cannot be expressed, e.g.
	// spec.match.source.
	Part   string
	Reason string
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("%s: %s %s: %s", e.Mutator, e.Part, ErrUnsupported, e.Reason)
}

func (e *UnsupportedError) Unwrap() error { return ErrUnsupported }

// Options tune generated policies.
type Options struct {
	// FailurePolicy is the policies' failurePolicy; Fail when empty, as a
	// mutator that errors in Bouncer's webhook refuses the object.
	FailurePolicy admissionregistrationv1.FailurePolicyType
}

// Generated is the policy and binding of one mutator.
type Generated struct {
	Mutator mutation.ID
	Policy  *admissionregistrationv1.MutatingAdmissionPolicy
	Binding *admissionregistrationv1.MutatingAdmissionPolicyBinding
}

// Name is the name of the policy and binding generated for a mutator:
// bouncer-<kind>-<name>, lowercase.
func Name(id mutation.ID) string {
	return NamePrefix + strings.ToLower(id.Kind) + "-" + id.Name
}

// Generate writes the policy and binding of a mutator. A mutator Bouncer
// refuses is an input error; one that Bouncer runs but a policy cannot
// express is an *UnsupportedError.
func Generate(in *apis.Mutator, o Options) (*Generated, error) {
	compiled, err := mutation.Compile(in)
	if err != nil {
		return nil, err
	}
	id := compiled.ID()
	unsupported := func(part, reason string) error {
		return &UnsupportedError{Mutator: id, Part: part, Reason: reason}
	}
	if in.Kind == apis.KindAssignImage {
		return nil, unsupported("spec.parameters",
			"AssignImage splits an image reference into domain, path and tag as Gatekeeper parses it (a first component with '.' or ':' or localhost is a registry; ':' or '@' starts the tag) and rewrites the parts; the generator has no CEL form of that parse, and an approximate one would rewrite some references differently")
	}
	if in.Spec.Match.Source == apis.SourceGenerated {
		return nil, unsupported("spec.match.source",
			"source Generated applies only to objects Bouncer expands from workloads, which the apiserver never admits")
	}
	if o.FailurePolicy == "" {
		o.FailurePolicy = defaultFailureMode
	}
	tests, err := pathTests(compiled.Path(), in.Spec.Parameters.PathTests)
	if err != nil {
		return nil, err
	}
	mg := &mutationGen{path: compiled.Path(), tests: tests, kind: in.Kind}
	if err := mg.leafFrom(in); err != nil {
		return nil, err
	}
	expr := mg.patches(0, "object", pointer{})
	if expr == emptyList {
		return nil, unsupported("spec.location", "the mutator can never change an object (its path tests exclude every object)")
	}
	constraints, conditions := matchOf(in)
	name := Name(id)
	meta := func() metav1.ObjectMeta {
		return metav1.ObjectMeta{
			Name:        name,
			Labels:      map[string]string{ManagedByLabel: ManagedByValue},
			Annotations: map[string]string{MutatorAnnotation: id.String()},
		}
	}
	fp := o.FailurePolicy
	p := &admissionregistrationv1.MutatingAdmissionPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: admissionregistrationv1.SchemeGroupVersion.String(), Kind: "MutatingAdmissionPolicy"},
		ObjectMeta: meta(),
		Spec: admissionregistrationv1.MutatingAdmissionPolicySpec{
			MatchConstraints: constraints,
			MatchConditions:  conditions,
			FailurePolicy:    &fp,
			// Gatekeeper repeats mutators until the object stops
			// changing; IfNeeded runs this one again when a later
			// mutation changed the object.
			ReinvocationPolicy: admissionregistrationv1.IfNeededReinvocationPolicy,
			Mutations: []admissionregistrationv1.Mutation{{
				PatchType: admissionregistrationv1.PatchTypeJSONPatch,
				JSONPatch: &admissionregistrationv1.JSONPatch{Expression: expr},
			}},
		},
	}
	b := &admissionregistrationv1.MutatingAdmissionPolicyBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: admissionregistrationv1.SchemeGroupVersion.String(), Kind: "MutatingAdmissionPolicyBinding"},
		ObjectMeta: meta(),
		Spec:       admissionregistrationv1.MutatingAdmissionPolicyBindingSpec{PolicyName: name},
	}
	if err := Check(p); err != nil {
		return nil, fmt.Errorf("%s: the generated policy does not compile (a bug in the generator): %w", id, err)
	}
	return &Generated{Mutator: id, Policy: p, Binding: b}, nil
}

// pathTests maps each path test to the index of the location's node it
// tests; mutation.Compile has checked them already.
func pathTests(loc mutation.Path, in []apis.PathTest) (map[int]string, error) {
	out := map[int]string{}
	for i, t := range in {
		sub, err := mutation.ParsePath(t.SubPath)
		if err != nil {
			return nil, fmt.Errorf("spec.parameters.pathTests[%d].subPath: %w", i, err)
		}
		if len(sub) > len(loc) {
			return nil, fmt.Errorf("spec.parameters.pathTests[%d].subPath: %q is longer than the location", i, sub)
		}
		out[len(sub)-1] = t.Condition
	}
	return out, nil
}
