package gitsync

import (
	"github.com/bouncer-policy/bouncer/pkg/apis"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// PolicySyncGVR is the resource the controller watches.
var PolicySyncGVR = schema.GroupVersionResource{Group: apis.SyncGroup, Version: apis.SyncVersion, Resource: apis.PolicySyncResource}

// DefaultAllowedKinds are the policy kinds a commit may hold when a
// PolicySync lists none. Kind "*" allows every kind of its group. pkg/vet
// will carry the list itself; until it does, it lives here.
var DefaultAllowedKinds = []schema.GroupKind{
	{Group: apis.TemplatesGroup, Kind: apis.KindConstraintTemplate},
	{Group: apis.ConstraintsGroup, Kind: "*"},
	{Group: apis.ConfigGroup, Kind: apis.KindConfig},
	{Group: "syncset.gatekeeper.sh", Kind: "SyncSet"},
	{Group: apis.ExpansionGroup, Kind: apis.KindExpansionTemplate},
	{Group: "mutations.gatekeeper.sh", Kind: "*"},
	{Group: "admissionregistration.k8s.io", Kind: "ValidatingAdmissionPolicy"},
	{Group: "admissionregistration.k8s.io", Kind: "ValidatingAdmissionPolicyBinding"},
	{Group: "admissionregistration.k8s.io", Kind: "MutatingAdmissionPolicy"},
	{Group: "admissionregistration.k8s.io", Kind: "MutatingAdmissionPolicyBinding"},
	// Suites are read by validation and never applied.
	{Group: apis.SuiteGroup, Kind: apis.KindSuite},
}

// allowedKinds is the spec's list, or the default.
func allowedKinds(spec []apis.GroupKind) []schema.GroupKind {
	if len(spec) == 0 {
		return DefaultAllowedKinds
	}
	out := make([]schema.GroupKind, len(spec))
	for i, gk := range spec {
		out[i] = schema.GroupKind{Group: gk.Group, Kind: gk.Kind}
	}
	return out
}

// kindAllowed reports whether gk is in allowed; constraint kinds match by
// group alone, as pkg/vet matches them, since each template makes one.
func kindAllowed(allowed []schema.GroupKind, gk schema.GroupKind) bool {
	for _, a := range allowed {
		if a.Group == gk.Group && (a.Kind == "*" || a.Kind == gk.Kind || gk.Group == apis.ConstraintsGroup) {
			return true
		}
	}
	return false
}

// applied reports whether objects of gk go to the cluster; Suites are
// test files of the commit.
func applied(gk schema.GroupKind) bool {
	return gk.Group != apis.SuiteGroup
}
