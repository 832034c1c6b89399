// Package engine is Bouncer's policy engine: it holds compiled templates,
// constraints and expansion templates, and answers one question for every
// entry point (webhook, audit, CLI, git sync validation): which constraints
// does this object break, and what does each say?
//
// The engine is pure Go: it never talks to an API server. Policy languages
// plug in as Drivers (engine/rego, engine/cel). Templates are compiled once
// when added; a review only evaluates the constraints indexed under the
// object's GroupKind. Readers never block: every change builds a new
// immutable snapshot that is swapped in atomically, so reviews are safe to
// run concurrently with each other and with updates.
package engine
