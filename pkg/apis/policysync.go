package apis

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	// SyncGroup is the API group of Bouncer's git sync.
	SyncGroup = "sync.bouncer.dev"
	// SyncVersion is the served version of PolicySync.
	SyncVersion = "v1alpha1"
	// KindPolicySync is the kind that syncs policies from git.
	KindPolicySync = "PolicySync"
	// PolicySyncResource is its plural resource name.
	PolicySyncResource = "policysyncs"
)

// Values of PolicySyncSpec.Render and GitSpec.Auth.
const (
	RenderAuto      = "auto"
	RenderNone      = "none"
	RenderKustomize = "kustomize"

	GitAuthNone  = "none"
	GitAuthToken = "token"
	GitAuthSSH   = "ssh"
)

// Secret keys a PolicySync reads, as Config Sync names them.
const (
	// SecretKeyUsername and SecretKeyToken hold token auth (HTTP basic auth).
	SecretKeyUsername = "username"
	SecretKeyToken    = "token"
	// SecretKeySSH holds the private key and SecretKeyKnownHosts the host
	// keys for ssh auth.
	SecretKeySSH        = "ssh"
	SecretKeyKnownHosts = "known_hosts"
	// SecretKeyCert holds the CA bundle (PEM) of caCertSecretRef.
	SecretKeyCert = "cert"
	// SecretKeyWebhookToken holds the receiver's shared secret in
	// webhook.secretRef (the GitHub HMAC key, the GitLab or bearer token).
	SecretKeyWebhookToken = "token"
)

// AnnotationRequestedAt asks the leader for an immediate sync: the receiver
// writes the time of the git host's call, and any change of it wakes the
// sync. `kubectl annotate` works as well.
const AnnotationRequestedAt = "sync.bouncer.dev/requested-at"

// PolicySync keeps a cluster's policies equal to a directory of a git
// repository: fetch, render, validate the whole commit, apply, prune, report.
type PolicySync struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              PolicySyncSpec   `json:"spec,omitempty"`
	Status            PolicySyncStatus `json:"status,omitempty"`
}

// PolicySyncSpec is where the policies come from and how they are applied.
type PolicySyncSpec struct {
	// Git is the repository, revision and directory to sync.
	Git GitSpec `json:"git"`
	// Render is auto (kustomize when the directory holds a kustomization,
	// plain YAML otherwise), none or kustomize. Default auto.
	Render string `json:"render,omitempty"`
	// RequireSuitesPass runs every Suite of the commit before applying it;
	// a failing Suite keeps the commit out.
	RequireSuitesPass bool `json:"requireSuitesPass,omitempty"`
	// PreventDrift makes Bouncer's webhook refuse updates and deletions of
	// synced objects by anyone but Bouncer.
	PreventDrift bool `json:"preventDrift,omitempty"`
	// AllowedKinds lists the only kinds a commit may hold; empty means the
	// policy kinds (templates, constraints, Config, SyncSet,
	// ExpansionTemplate, mutators, admission policies and their bindings).
	AllowedKinds []GroupKind `json:"allowedKinds,omitempty"`
	// Webhook configures the receiver at POST /sync/<namespace>/<name>.
	Webhook *SyncWebhook `json:"webhook,omitempty"`
}

// GitSpec names the repository, as Config Sync's RootSync spec.git does.
type GitSpec struct {
	// Repo is an https, ssh or file URL.
	Repo string `json:"repo"`
	// Branch is synced unless Revision is set. Default main.
	Branch string `json:"branch,omitempty"`
	// Revision is a tag or commit; it overrides Branch.
	Revision string `json:"revision,omitempty"`
	// Dir is the directory inside the repository; default its root.
	Dir string `json:"dir,omitempty"`
	// Period between polls, e.g. 15s (the default).
	Period metav1.Duration `json:"period,omitempty"`
	// Auth is none, token or ssh. Default none.
	Auth string `json:"auth,omitempty"`
	// SecretRef names a Secret in the PolicySync's namespace: keys
	// username and token for token auth, ssh and known_hosts for ssh.
	SecretRef *LocalObjectReference `json:"secretRef,omitempty"`
	// CACertSecretRef names a Secret whose key cert holds CA certificates
	// (PEM) trusted for https.
	CACertSecretRef *LocalObjectReference `json:"caCertSecretRef,omitempty"`
}

// SyncWebhook is the receiver's configuration.
type SyncWebhook struct {
	// SecretRef names a Secret in the PolicySync's namespace whose key token
	// is the shared secret.
	SecretRef LocalObjectReference `json:"secretRef"`
}

// LocalObjectReference names an object in the same namespace.
type LocalObjectReference struct {
	Name string `json:"name"`
}

// GroupKind names a kind; Kind "*" stands for every kind of the group.
type GroupKind struct {
	Group string `json:"group,omitempty"`
	Kind  string `json:"kind"`
}

// PolicySyncStatus reports each step of the last pass, as Config Sync's
// RootSync status does.
type PolicySyncStatus struct {
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// LastSyncedCommit is the commit whose objects are applied now.
	LastSyncedCommit string `json:"lastSyncedCommit,omitempty"`
	// Source is the fetch and the validation of the latest commit.
	Source SyncStep `json:"source,omitempty"`
	// Rendering is the rendering of the commit's directory.
	Rendering SyncStep `json:"rendering,omitempty"`
	// Sync is the apply and prune.
	Sync SyncApplyStep `json:"sync,omitempty"`
	// Conditions Ready, Reconciling and Stalled.
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// SyncStep is the outcome of one step for one commit.
type SyncStep struct {
	Commit       string        `json:"commit,omitempty"`
	LastUpdate   *metav1.Time  `json:"lastUpdate,omitempty"`
	Errors       []SyncError   `json:"errors,omitempty"`
	ErrorSummary *ErrorSummary `json:"errorSummary,omitempty"`
}

// SyncApplyStep is the apply step, with the number of objects applied.
type SyncApplyStep struct {
	SyncStep    `json:",inline"`
	ObjectCount int `json:"objectCount,omitempty"`
}

// SyncError is one problem, with the files and objects it concerns.
type SyncError struct {
	// Code is stable: source, render, kind-not-allowed, template,
	// constraint, suite, duplicate, apply, prune.
	Code      string         `json:"code"`
	Message   string         `json:"message"`
	Resources []SyncResource `json:"resources,omitempty"`
}

// SyncResource locates an error: a file of the commit and/or an object.
type SyncResource struct {
	File   string `json:"file,omitempty"`
	Line   int    `json:"line,omitempty"`
	Object string `json:"object,omitempty"`
}

// ErrorSummary counts errors; Errors holds at most the first few.
type ErrorSummary struct {
	TotalCount int  `json:"totalCount"`
	Truncated  bool `json:"truncated,omitempty"`
}
