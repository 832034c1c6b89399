// Package crds embeds the CustomResourceDefinitions Bouncer serves, so
// `bouncer serve` can install them and the manifests under deploy/ stay the
// single source.
package crds

import (
	"embed"
)

// FS holds the CRD manifests.
//
//go:embed constrainttemplates.yaml expansiontemplates.yaml configs.yaml syncsets.yaml policysyncs.yaml assign.yaml assignmetadata.yaml modifyset.yaml assignimage.yaml
var FS embed.FS

// Files lists the CRD manifests in FS.
var Files = []string{"constrainttemplates.yaml", "expansiontemplates.yaml", "configs.yaml", "syncsets.yaml", "policysyncs.yaml", "assign.yaml", "assignmetadata.yaml", "modifyset.yaml", "assignimage.yaml"}
