package apis

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Config is the cluster-wide configuration, named "config", as in Gatekeeper.
type Config struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ConfigSpec `json:"spec,omitempty"`
}

// ConfigSpec holds what to sync into the inventory and which namespaces are
// exempt from which processes.
type ConfigSpec struct {
	Sync  SyncSpec     `json:"sync,omitempty"`
	Match []MatchEntry `json:"match,omitempty"`
}

// SyncSpec lists the kinds replicated into data.inventory.
type SyncSpec struct {
	SyncOnly []SyncOnlyEntry `json:"syncOnly,omitempty"`
}

// SyncOnlyEntry is one group/version/kind to sync.
type SyncOnlyEntry struct {
	Group   string `json:"group,omitempty"`
	Version string `json:"version,omitempty"`
	Kind    string `json:"kind,omitempty"`
}

// MatchEntry exempts namespaces from processes (audit, webhook, sync, *).
type MatchEntry struct {
	ExcludedNamespaces []string `json:"excludedNamespaces,omitempty"`
	Processes          []string `json:"processes,omitempty"`
}

// SyncSet names kinds to replicate into data.inventory, as Gatekeeper's
// syncset.gatekeeper.sh/v1alpha1 SyncSet (cluster-scoped). What is synced
// is the union of every SyncSet's gvks and the Config's syncOnly.
type SyncSet struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              SyncSetSpec `json:"spec,omitempty"`
}

// SyncSetSpec lists the kinds a SyncSet asks for.
type SyncSetSpec struct {
	GVKs []SyncOnlyEntry `json:"gvks,omitempty"`
}
