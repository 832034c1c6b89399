// Package library holds Bouncer's built-in policies as files (one directory
// per policy: template, sample constraint, samples, suite, README) and
// embeds them, so the binary carries the library it documents. Parsing and
// filtering live in pkg/library; this package only exports the files.
package library

import "embed"

// FS is the library tree: <policy>/{template,constraint,suite}.yaml,
// <policy>/README.md, <policy>/samples/*, expansion/expansion.yaml and the
// generated README.md index.
//
//go:embed README.md expansion */*.yaml */*.md */samples
var FS embed.FS
