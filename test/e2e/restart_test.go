package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestRestartedReplicaEnforcesAtOnce: a replica reports ready (and registers
// the webhook) only once the policies already in the cluster are loaded, so
// the very first request after a restart is judged with them.
func TestRestartedReplicaEnforcesAtOnce(t *testing.T) {
	const ns = "restart"
	createNamespace(t, ns)
	first := startBouncer(t, "bouncer-restart-a")
	mustKubectl(t, readFile(t, "examples/disallowed-tags/template.yaml"), "apply", "-f", "-")
	eventually(t, 30*time.Second, func() error {
		_, err := kubectl(t, readFile(t, "examples/disallowed-tags/constraint.yaml"), "apply", "-f", "-")
		return err
	})
	waitEnforced(t, "K8sDisallowedTags", "no-latest", "bouncer-restart-a")
	first.stop()

	startBouncer(t, "bouncer-restart-b")
	_, err := createPod(t, pod("first-after-restart", ns, "nginx:latest", nil))
	if err == nil || !strings.Contains(err.Error(), "[no-latest]") {
		t.Fatalf("the first request after a restart must be denied by the loaded policy, got %v", err)
	}
	mustKubectl(t, "", "delete", "constrainttemplate", "k8sdisallowedtags")
}
