// Package apis holds the Go types of the documents Bouncer reads and serves:
// the Gatekeeper-compatible groups (templates.gatekeeper.sh,
// constraints.gatekeeper.sh, expansion.gatekeeper.sh, config.gatekeeper.sh,
// test.gatekeeper.sh) and Bouncer's own group.
//
// The types mirror Gatekeeper's documents field for field so that templates,
// constraints and suites written for Gatekeeper decode unchanged. This package
// depends only on apimachinery and apiextensions types: no clients, no engine.
package apis
