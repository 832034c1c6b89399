package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// runBouncer runs the bouncer binary and returns its exit code and output.
func runBouncer(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bouncerBin, args...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("bouncer %s: %v\n%s", strings.Join(args, " "), err, out)
	return 0, ""
}

// TestControlsCVEDrill is the drill against one cluster: the cluster is
// exposed to CVE-2020-14386, the library's drop-NET_RAW policy exported
// into a policy directory and applied closes it, a Pod keeping NET_RAW is
// then refused, and the review reads the audit's violations of a Pod that
// predates the policy.
func TestControlsCVEDrill(t *testing.T) {
	const replica = "bouncer-controls"
	startBouncer(t, replica, "--audit-interval", "3s", "--leader-election-id", "controls-e2e")
	ns := fmt.Sprintf("controls-%d", time.Now().UnixNano()%1_000_000)
	createNamespace(t, ns)
	t.Cleanup(func() {
		_ = kube(t).CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})
	// A Pod that keeps NET_RAW, admitted before the policy exists.
	if _, err := createPod(t, pod("before", ns, "nginx:1.27.3", nil)); err != nil {
		t.Fatalf("pod before the policy: %v", err)
	}

	code, out := runBouncer(t, "controls", "--cve", "CVE-2020-14386", "--kubeconfig", cluster.Kubeconfig)
	if code != 1 || !strings.Contains(out, "exposed") || !strings.Contains(out, "bouncer library export --policy drop-net-raw policies") {
		t.Fatalf("before the policy: exit %d, want 1 (exposed) and the export command:\n%s", code, out)
	}
	t.Logf("before:\n%s", out)

	repo := filepath.Join(t.TempDir(), "policies")
	if code, out := runBouncer(t, "library", "export", "--policy", "drop-net-raw", repo); code != 0 {
		t.Fatalf("library export: exit %d\n%s", code, out)
	}
	policy := filepath.Join(repo, "drop-net-raw")
	mustKubectl(t, "", "apply", "-f", filepath.Join(policy, "template.yaml"))
	t.Cleanup(func() {
		// Other tests share the cluster: a constraint denying NET_RAW in
		// every namespace must not outlive this one.
		_, _ = kubectl(t, "", "delete", "--ignore-not-found", "-f", filepath.Join(policy, "constraint.yaml"))
		_, _ = kubectl(t, "", "delete", "--ignore-not-found", "-f", filepath.Join(policy, "template.yaml"))
	})
	eventually(t, 60*time.Second, func() error {
		out, err := kubectl(t, "", "apply", "-f", filepath.Join(policy, "constraint.yaml"))
		if err != nil {
			return fmt.Errorf("constraint CRD not served yet: %v: %s", err, out)
		}
		return nil
	})
	waitEnforced(t, "K8sRequireDropNetRaw", "drop-net-raw", replica)

	eventually(t, 30*time.Second, func() error {
		_, err := createPod(t, pod("keeps-net-raw", ns, "nginx:1.27.3", nil))
		if err == nil {
			_ = kube(t).CoreV1().Pods(ns).Delete(context.Background(), "keeps-net-raw", metav1.DeleteOptions{})
			return errors.New("a Pod keeping NET_RAW was admitted")
		}
		if !strings.Contains(err.Error(), "[drop-net-raw]") {
			return fmt.Errorf("refused, but not by drop-net-raw: %v", err)
		}
		return nil
	})

	code, out = runBouncer(t, "controls", "--cve", "CVE-2020-14386", "--kubeconfig", cluster.Kubeconfig)
	if code != 0 || !strings.Contains(out, "protected") || !strings.Contains(out, "K8sRequireDropNetRaw/drop-net-raw") {
		t.Fatalf("after the policy: exit %d, want 0 (protected by K8sRequireDropNetRaw/drop-net-raw):\n%s", code, out)
	}
	t.Logf("after:\n%s", out)

	// The audit finds the Pod from before the policy: CIS 5.2.8 is
	// enforced, with existing violations.
	eventually(t, 60*time.Second, func() error {
		code, out := runBouncer(t, "controls", "--standard", "cis", "-o", "json", "--kubeconfig", cluster.Kubeconfig)
		if code != 0 {
			return fmt.Errorf("exit %d: %s", code, out)
		}
		var entries []struct {
			Control string `json:"control"`
			Targets []struct {
				Status      string   `json:"status"`
				Constraints []string `json:"constraints"`
			} `json:"targets"`
		}
		if err := json.Unmarshal([]byte(out), &entries); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		for _, e := range entries {
			if e.Control != "5.2.8" {
				continue
			}
			if len(e.Targets) != 1 || e.Targets[0].Status != "enforced-with-violations" || !strings.Contains(strings.Join(e.Targets[0].Constraints, ","), "K8sRequireDropNetRaw/drop-net-raw") {
				return fmt.Errorf("5.2.8: %+v", e.Targets)
			}
			return nil
		}
		return errors.New("no 5.2.8 in the review")
	})
	_, out = runBouncer(t, "controls", "--standard", "cis", "--kubeconfig", cluster.Kubeconfig)
	t.Logf("review:\n%s", out)
}
