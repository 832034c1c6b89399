package gitsync

import (
	"github.com/bouncer-policy/bouncer/pkg/apis"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// PolicySyncGVR is the resource the controller watches.
var PolicySyncGVR = schema.GroupVersionResource{Group: apis.SyncGroup, Version: apis.SyncVersion, Resource: apis.PolicySyncResource}

// allowedKinds is the spec's list for pkg/vet; nil, when the spec lists
// none, lets vet apply its DefaultAllowedKinds, so `bouncer vet` and the
// sync accept exactly the same commits.
func allowedKinds(spec []apis.GroupKind) []schema.GroupKind {
	if len(spec) == 0 {
		return nil
	}
	out := make([]schema.GroupKind, len(spec))
	for i, gk := range spec {
		out[i] = schema.GroupKind{Group: gk.Group, Kind: gk.Kind}
	}
	return out
}
