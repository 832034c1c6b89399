// Package apply is the one applier for every object Bouncer writes: its
// CRDs, generated constraint CRDs, ValidatingAdmissionPolicies and their
// bindings, the webhook configuration, and git-synced objects. It
// server-side applies with one field manager and resolves kinds through
// discovery, refreshed when a kind is unknown since CRDs may have just been
// created.
//
// ApplySet applies a set of objects as a Kubernetes ApplySet (KEP-3659, the
// labels and annotations kubectl apply --prune --applyset writes): a parent
// object (a Secret or ConfigMap, or a custom parent) carries the set's id
// label and lists the group-kinds and namespaces the set uses; each member
// carries the part-of label. The inventory grows with the number of kinds
// and namespaces, never with the number of objects. Prune deletes members
// of earlier runs that are no longer wanted, and nothing without the label.
// A run sends its members by a bounded pool of workers, each after what it
// depends on (order.go), reads the live members with one List per resource
// (live.go) rather than a Get per object, and leaves alone the members its
// own last write still describes (AnnotationHash), so a set of thousands
// of objects of which few change costs a few requests.
//
// ApplyObject applies one object outside any set, such as the webhook
// configuration. Apply applies a loaded document (bouncer up, tests).
//
// The package knows nothing of policies; besides client-go it uses only
// pkg/load, for the Document that Apply takes.
package apply
