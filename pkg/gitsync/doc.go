// Package gitsync keeps a cluster's policies equal to a directory of a git
// repository, one PolicySync at a time: fetch (pkg/gitsource), render and
// validate the whole commit offline (pkg/vet), apply and prune through the
// one applier (pkg/apply's ApplySet), report in status. A commit is applied
// whole or not at all; an invalid one leaves the last good commit applied.
//
// Controller is the leader's part: one goroutine per PolicySync, woken by
// its period, by spec changes, by the receiver's requested-at annotation and
// by drift of the objects it applied. Frontend is every replica's part: the
// receiver that git hosts call on push, and the check that refuses manual
// edits of synced objects when preventDrift is on.
//
// The package depends on client-go, pkg/apis, pkg/apply, pkg/gitsource and
// pkg/vet; it knows nothing of the webhook's engine.
package gitsync
