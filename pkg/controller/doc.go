// Package controller keeps a replica's engine in step with the cluster. It
// runs inside a controller-runtime manager: one level-triggered reconciler
// per kind (ConstraintTemplate, every constraint kind, ExpansionTemplate,
// Config, SyncSet) reads from the manager's cache, loads the engine and
// writes what this replica enforces to status. Mutators (Assign,
// AssignMetadata, ModifySet, AssignImage) are kept in a mutation.System the
// same way; one whose location conflicts with another's schema is reported
// (byPod errors of type schema_conflict) and neither applies.
//
// Last good wins: an update that does not compile or validate never
// replaces the version being enforced. The version enforced is persisted in
// the object's status (status.lastGood), so a replica that starts while the
// stored version is broken enforces the last good one too.
//
// Work only one replica may do — generating constraint CRDs, syncing native
// ValidatingAdmissionPolicies and MutatingAdmissionPolicies, writing the
// aggregated Ready condition — is done by the leader; every replica loads
// its own engine and serves admission. Readiness turns true once everything
// present at start is loaded (templates, constraints, expansions, the
// Config, SyncSets and the inventory they ask for).
//
// The package depends on the engine and the API types, never on the
// webhook or the server that wires it.
package controller
