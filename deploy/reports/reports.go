// Package reports embeds the CustomResourceDefinitions of the report
// formats the audit writes (wgpolicyk8s.io and openreports.io). They are
// kept apart from Bouncer's own CRDs: they belong to the cluster's
// reporting stack and are installed only on request.
package reports

import "embed"

// FS holds the CRD manifests.
//
//go:embed wgpolicyk8s.yaml openreports.yaml
var FS embed.FS

// Files lists the manifests in FS.
var Files = []string{"wgpolicyk8s.yaml", "openreports.yaml"}
