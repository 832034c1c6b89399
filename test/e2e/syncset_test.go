package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
)

func syncSet(name string, kinds ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: syncset.gatekeeper.sh/v1alpha1\nkind: SyncSet\nmetadata: {name: %s}\nspec:\n  gvks:\n", name)
	for _, k := range kinds {
		group, kind, _ := strings.Cut(k, "/")
		fmt.Fprintf(&b, "  - {group: %q, version: v1, kind: %s}\n", group, kind)
	}
	return b.String()
}

// TestSyncSet: Gatekeeper's SyncSet feeds data.inventory in bouncer serve,
// for the webhook and the audit alike. Two Ingresses share a host before
// any policy; the unique-host rule sees neither duplicate until a SyncSet
// names Ingress, then the webhook refuses a third and the audit reports the
// two (long before its next pass, an hour away). A kind stays synced while
// any SyncSet names it, and goes when the last one is deleted.
func TestSyncSet(t *testing.T) {
	ctx := context.Background()
	const sys, nsA, nsB, host = "syncset-e2e-sys", "syncset-e2e-a", "syncset-e2e-b", "syncset-shop.example.com"
	dyn, err := dynamic.NewForConfig(restConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{sys, nsA, nsB} {
		createNamespace(t, ns)
	}
	t.Cleanup(func() {
		_, _ = kubectl(t, "", "delete", "--ignore-not-found", "syncset", "ingresses", "ingresses-and-namespaces")
		_, _ = kubectl(t, readFile(t, "library/unique-ingress-host/template.yaml"), "delete", "--ignore-not-found", "--wait=false", "-f", "-")
		for _, ns := range []string{sys, nsA, nsB} {
			_ = kube(t).CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
		}
	})
	for _, ns := range []string{nsA, nsB} {
		if _, err := kube(t).NetworkingV1().Ingresses(ns).Create(ctx, ingress("shop", ns, host), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	applyBouncerCRDs(t)
	const name = "bouncer-syncset"
	p := startBouncer(t, name, "--namespace", sys, "--audit-interval", "1h", "--audit-report-format", "none", "--leader-election-id", "syncset-e2e")
	mustKubectl(t, readFile(t, "library/unique-ingress-host/template.yaml"), "apply", "-f", "-")
	eventually(t, 30*time.Second, func() error {
		out, err := kubectl(t, readFile(t, "library/unique-ingress-host/constraint.yaml"), "apply", "-f", "-")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	waitEnforced(t, "K8sUniqueIngressHost", "unique-ingress-host", name)

	// third tries one more Ingress for the host: nil when it is admitted
	// (and then removed again), the refusal otherwise.
	third := func() error {
		_, err := kube(t).NetworkingV1().Ingresses(nsB).Create(ctx, ingress("shop-2", nsB, host), metav1.CreateOptions{})
		if err == nil {
			return kube(t).NetworkingV1().Ingresses(nsB).Delete(ctx, "shop-2", metav1.DeleteOptions{})
		}
		if !strings.Contains(err.Error(), host) {
			return fmt.Errorf("refused for another reason: %v", err)
		}
		return err
	}
	refused := func() error {
		if err := third(); err == nil {
			return fmt.Errorf("a third Ingress for %s was admitted", host)
		} else if !strings.Contains(err.Error(), host) {
			return err
		}
		return nil
	}
	// Other tests may leave Ingresses that share hosts: only this test's
	// namespaces are counted.
	audited := func(want int) func() error {
		return func() error {
			total, shown := constraintAudit(t, dyn, "K8sUniqueIngressHost", "unique-ingress-host")
			if total < 0 {
				return fmt.Errorf("unique-ingress-host: no audit status yet")
			}
			var ours []string
			for _, v := range shown {
				if strings.Contains(v, " syncset-e2e-") {
					ours = append(ours, v)
				}
			}
			if len(ours) != want {
				return fmt.Errorf("unique-ingress-host: %v of this test's Ingresses reported (total %d), want %d", ours, total, want)
			}
			return nil
		}
	}

	// Nothing synced: neither entry point can see the other Ingress.
	eventually(t, 60*time.Second, audited(0))
	if err := third(); err != nil {
		t.Fatalf("with nothing synced, a third Ingress was refused: %v", err)
	}

	mustKubectl(t, syncSet("ingresses-and-namespaces", "networking.k8s.io/Ingress", "/Namespace"), "apply", "-f", "-")
	mustKubectl(t, syncSet("ingresses", "networking.k8s.io/Ingress"), "apply", "-f", "-")
	eventually(t, 30*time.Second, refused)
	eventually(t, 30*time.Second, audited(2))

	// Still named by the other SyncSet: still synced.
	mustKubectl(t, "", "delete", "syncset", "ingresses-and-namespaces")
	// Once the replica has applied the deletion, Ingresses must still be in.
	eventually(t, 30*time.Second, func() error {
		if p.logged(`"msg":"syncset removed"`, `"name":"ingresses-and-namespaces"`) {
			return nil
		}
		return fmt.Errorf("removal of SyncSet ingresses-and-namespaces not applied yet")
	})
	if err := refused(); err != nil {
		t.Fatalf("Ingress dropped from the inventory while a SyncSet still names it: %v", err)
	}

	// The last SyncSet naming Ingress goes: so does the kind.
	mustKubectl(t, "", "delete", "syncset", "ingresses")
	eventually(t, 30*time.Second, third)
	eventually(t, 30*time.Second, audited(0))
}

// logged reports whether one line of the replica's log holds every part.
func (p *bouncerProcess) logged(parts ...string) bool {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		all := true
		for _, part := range parts {
			all = all && strings.Contains(line, part)
		}
		if all {
			return true
		}
	}
	return false
}
