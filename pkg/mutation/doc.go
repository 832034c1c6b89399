// Package mutation applies Gatekeeper's mutators (mutations.gatekeeper.sh
// Assign, AssignMetadata, ModifySet and AssignImage) to objects, with
// Gatekeeper's semantics: locations with keyed lists and globs, path tests,
// a deterministic order repeated until the object stops changing, and
// schema conflicts that keep both mutators from applying.
//
// It sits beside the validating engine: the mutating webhook, expansion and
// the CLI call it. It depends on pkg/apis and pkg/match only: no clients, no
// engine, no I/O.
package mutation
