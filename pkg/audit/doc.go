// Package audit evaluates what already runs in a cluster against the loaded
// constraints, at the audit.gatekeeper.sh enforcement point, with the same
// engine the webhook uses.
//
// It keeps no cache of audited objects: every kind some constraint can match
// is listed in pages with an uncached client and then watched from the
// list's resourceVersion, so a created, changed or deleted object is
// re-evaluated alone. Only violations (and evaluation errors) are kept, per
// object, so memory grows with the page size and the number of findings,
// not with the size of the cluster.
//
// What it finds is written as constraint status (Gatekeeper's
// totalViolations, violations[], auditTimestamp) and as report objects
// (wgpolicyk8s.io PolicyReport and openreports.io Report); `bouncer audit`
// runs one pass from the command line and prints it instead.
//
// The package depends on pkg/engine for evaluation and on client-go; it
// does not depend on the controllers or the webhook.
package audit
