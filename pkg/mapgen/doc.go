// Package mapgen turns Gatekeeper mutators into Kubernetes' native
// MutatingAdmissionPolicy and MutatingAdmissionPolicyBinding
// (admissionregistration.k8s.io/v1), so that the apiserver applies the
// mutation itself, without a webhook.
//
// Every mutation is written as a JSONPatch CEL expression, not as an
// ApplyConfiguration: Gatekeeper's Assign replaces the value at its
// location, while an apply configuration merges into it and cannot touch
// atomic lists; a JSON patch built from the object says exactly what
// Gatekeeper does (create the missing parents, replace the leaf, walk every
// element of a globbed list by index, append a keyed element that is
// missing). A mutator (or a part of one) that CEL cannot say the same way is
// refused with an *UnsupportedError naming the reason; nothing is generated
// for it, so a generated policy never does something other than the
// mutator.
//
// Generated policies are compiled with the apiserver's own CEL compiler
// before they are returned. The package depends on pkg/apis and
// pkg/mutation (to validate mutators as Bouncer runs them), never on a
// client or the CLI.
package mapgen
