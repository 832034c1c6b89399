package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestAPIServerRestart: Bouncer outlives a restart of the kube-apiserver
// (longer than its leader lease's renew deadline): it keeps its policies,
// reconnects its watches and is still the leader's and the webhook's.
func TestAPIServerRestart(t *testing.T) {
	const ns, name = "apirestart", "bouncer-apirestart"
	createNamespace(t, ns)
	p := startBouncer(t, name, "--failure-policy", "Fail",
		"--leader-election-lease-duration", "4s", "--leader-election-renew-deadline", "3s", "--leader-election-retry-period", "500ms")
	applyDisallowedTags(t, name)
	mustBeDenied(t, ns, "before", "[no-latest]")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	started := time.Now()
	if err := cluster.Restart(ctx, "kube-apiserver"); err != nil {
		t.Fatal(err)
	}
	t.Logf("kube-apiserver restarted in %s", time.Since(started).Round(100*time.Millisecond))
	select {
	case <-p.done:
		t.Fatal("bouncer exited when the apiserver restarted")
	default:
	}
	// Enforced throughout: the first request after the restart is judged
	// by the policies loaded before it.
	eventually(t, 30*time.Second, func() error {
		_, err := createPod(t, pod(fmt.Sprintf("after-%d", time.Now().UnixNano()), ns, "nginx:latest", nil))
		if err == nil {
			return fmt.Errorf("nginx:latest admitted after the apiserver restart")
		}
		if !strings.Contains(err.Error(), "[no-latest]") {
			return fmt.Errorf("not the policy's denial (apiserver still starting?): %v", err)
		}
		return nil
	})
	// The watches reconnected: a constraint created now is enforced.
	c := strings.NewReplacer("name: no-latest", "name: no-latest-after-restart").Replace(readFile(t, disallowedTagsConstraint))
	mustKubectl(t, c, "apply", "-f", "-")
	waitEnforced(t, "K8sDisallowedTags", "no-latest-after-restart", name)
	if _, err := createPod(t, pod("pinned", ns, "nginx:1.27.3", nil)); err != nil {
		t.Fatalf("a pinned image must be admitted after the restart: %v", err)
	}
}
