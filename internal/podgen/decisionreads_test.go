package podgen_test

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bouncer-policy/bouncer/pkg/engine"
)

// replicaFields are what Replica changes between the replicas of one pod
// template, as a cluster does: the name and uid, the node, the token
// volume and its mounts, the termination message path.
var replicaFields = [][]string{
	{"object", "metadata", "name"},
	{"object", "metadata", "uid"},
	{"object", "spec", "nodeName"},
	{"object", "spec", "volumes", engine.Every, "name"},
	{"object", "spec", "containers", engine.Every, "volumeMounts", engine.Every, "name"},
	{"object", "spec", "containers", engine.Every, "terminationMessagePath"},
	{"object", "spec", "initContainers", engine.Every, "volumeMounts", engine.Every, "name"},
}

// readsReplicaField reports whether a read set takes in a field that
// differs between replicas: the field's path or one above it, where a
// read of Every matches any key.
func readsReplicaField(s engine.ReadSet) bool {
	if s.All {
		return true
	}
	for _, p := range s.Paths {
		if len(p) > 0 && p[len(p)-1] == engine.Present {
			continue
		}
		for _, f := range replicaFields {
			if len(p) > len(f) {
				continue
			}
			match := true
			for i := range p {
				if p[i] != f[i] && p[i] != engine.Every {
					match = false
					break
				}
			}
			if match {
				return true
			}
		}
	}
	return false
}

// TestDecisionReadsSkipReplicaFields: in each library, with each tool's
// default engine, the templates whose decision reads take in a field that
// differs between replicas — and so can never answer a passing replica
// from the cache — are exactly the known ones, each for a reason of its
// own logic. A change to the read analysis that makes one more miss fails
// here; one that bounds another must update the list.
func TestDecisionReadsSkipReplicaFields(t *testing.T) {
	gk := gatekeeperLibrary(t)
	gkFiles, _ := filepath.Glob(filepath.Join(gk, "templates", "*.yaml"))
	bouncerFiles, _ := filepath.Glob("../../library/*/template.yaml")
	for _, lib := range []struct {
		name  string
		files []string
		want  []string
	}{
		// HostFilesystem matches mounts to hostPath volumes by name;
		// VolumeTypes tests each volume's fields for truth
		// (volumes[_][x]); RequiredProbes builds its message in a helper
		// function from the name and keys containers by the parameters'
		// probe names; the two RBAC templates are not about Pods.
		{"gatekeeper", gkFiles, []string{"K8sBlockEndpointEditDefaultRole", "K8sDisallowAnonymous", "K8sPSPHostFilesystem", "K8sPSPVolumeTypes", "K8sReplicaLimits", "K8sRequiredProbes", "K8sUniqueIngressHost"}},
		// Bouncer's CEL variants decide on what offends and name the
		// object only in their messages; VolumeTypes tests each volume's
		// fields by the parameters' type names (v[t]), the name included;
		// UniqueIngressHost (Rego only) tells itself from the other
		// Ingresses of the inventory by its name.
		{"bouncer", bouncerFiles, []string{"K8sPSSRestrictedVolumeTypes", "K8sUniqueIngressHost"}},
	} {
		t.Run(lib.name, func(t *testing.T) {
			e := policyEngine(t, lib.files, "", 0)
			var got []string
			for _, tp := range e.Templates() {
				rs, ok := tp.DecisionReads()
				if !ok || readsReplicaField(rs) {
					got = append(got, tp.Kind)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, lib.want) {
				t.Errorf("templates whose decision reads differ between replicas:\n got %s\nwant %s", strings.Join(got, " "), strings.Join(lib.want, " "))
			}
		})
	}
}
