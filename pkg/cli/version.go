// Package cli implements Bouncer's commands (test, verify, library, serve,
// up, down) on top of the engine, loader and reports, so that the cobra
// wiring in cmd/bouncer stays thin and the commands are testable in-process.
package cli

// Version is set at build time with -ldflags "-X .../pkg/cli.Version=...".
var Version = "dev"

// ProjectURI is where users find documentation.
const ProjectURI = "https://github.com/bouncer-policy/bouncer"
