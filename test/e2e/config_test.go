package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func ingress(name, ns, host string) *networkingv1.Ingress {
	prefix := networkingv1.PathTypePrefix
	return &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{{
			Host: host,
			IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{
				Path: "/", PathType: &prefix,
				Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}},
			}}}},
		}}},
	}
}

// TestConfigSyncAndExemptions: the Config replicates Ingresses into
// data.inventory, so the library's referential unique-host policy refuses a
// second Ingress for a host another namespace already uses; and the Config's
// excludedNamespaces for the webhook process are not reviewed.
func TestConfigSyncAndExemptions(t *testing.T) {
	const sys = "bouncer-config"
	createNamespace(t, sys)
	createNamespace(t, "team-a")
	createNamespace(t, "team-b")
	createNamespace(t, "sandbox")
	ctx := context.Background()
	first := startBouncer(t, "bouncer-config", "--namespace", sys)
	config := func(syncOnly, extraMatch string) string {
		return fmt.Sprintf(`apiVersion: config.gatekeeper.sh/v1alpha1
kind: Config
metadata:
  name: config
  namespace: %s
spec:
  sync:
    syncOnly:
%s
  match:
    - excludedNamespaces: ["sand*"]
      processes: ["webhook"]
%s`, sys, syncOnly, extraMatch)
	}
	const syncIngress = `      - group: networking.k8s.io
        version: v1
        kind: Ingress`
	mustKubectl(t, config(syncIngress, ""), "apply", "-f", "-")
	mustKubectl(t, readFile(t, "library/unique-ingress-host/template.yaml"), "apply", "-f", "-")
	eventually(t, 30*time.Second, func() error {
		_, err := kubectl(t, readFile(t, "library/unique-ingress-host/constraint.yaml"), "apply", "-f", "-")
		return err
	})
	waitEnforced(t, "K8sUniqueIngressHost", "unique-ingress-host", "bouncer-config")

	if _, err := kube(t).NetworkingV1().Ingresses("team-a").Create(ctx, ingress("shop", "team-a", "shop.example.com"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("first Ingress for the host refused: %v", err)
	}
	// The inventory follows the cluster through the informer: wait until
	// the duplicate is refused.
	eventually(t, 30*time.Second, func() error {
		_, err := kube(t).NetworkingV1().Ingresses("team-b").Create(ctx, ingress("shop", "team-b", "shop.example.com"), metav1.CreateOptions{})
		if err == nil {
			_ = kube(t).NetworkingV1().Ingresses("team-b").Delete(ctx, "shop", metav1.DeleteOptions{})
			return fmt.Errorf("duplicate host admitted")
		}
		if !strings.Contains(err.Error(), "shop.example.com") {
			return fmt.Errorf("refused for another reason: %v", err)
		}
		return nil
	})
	if _, err := kube(t).NetworkingV1().Ingresses("team-b").Create(ctx, ingress("other", "team-b", "other.example.com"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("Ingress for a free host refused: %v", err)
	}
	// Config exempts sandbox* from the webhook.
	if _, err := kube(t).NetworkingV1().Ingresses("sandbox").Create(ctx, ingress("shop", "sandbox", "shop.example.com"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("namespace excluded by the Config was reviewed: %v", err)
	}

	// A restarted replica is ready only once the inventory is loaded: its
	// first answer already knows team-a's Ingress.
	first.stop()
	second := startBouncer(t, "bouncer-config", "--namespace", sys)
	waitWebhookURL(t, "bouncer-config", second)
	if _, err := kube(t).NetworkingV1().Ingresses("team-b").Create(ctx, ingress("shop", "team-b", "shop.example.com"), metav1.CreateOptions{}); err == nil || !strings.Contains(err.Error(), "shop.example.com") {
		t.Fatalf("first request after a restart: want the duplicate host refused from the inventory, got %v", err)
	}

	duplicateAdmitted := func() error {
		_, err := kube(t).NetworkingV1().Ingresses("team-b").Create(ctx, ingress("shop", "team-b", "shop.example.com"), metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("duplicate still refused: %v", err)
		}
		return kube(t).NetworkingV1().Ingresses("team-b").Delete(ctx, "shop", metav1.DeleteOptions{})
	}
	// Excluding team-a (and sandbox, which holds the host too) from sync
	// takes their Ingresses out of the inventory.
	mustKubectl(t, config(syncIngress, `    - excludedNamespaces: ["team-a", "sand*"]
      processes: ["sync"]
`), "apply", "-f", "-")
	eventually(t, 30*time.Second, duplicateAdmitted)
	// Back in, then the kind dropped from syncOnly: nothing of it stays.
	mustKubectl(t, config(syncIngress, ""), "apply", "-f", "-")
	eventually(t, 30*time.Second, func() error {
		_, err := kube(t).NetworkingV1().Ingresses("team-b").Create(ctx, ingress("shop", "team-b", "shop.example.com"), metav1.CreateOptions{})
		if err == nil {
			_ = kube(t).NetworkingV1().Ingresses("team-b").Delete(ctx, "shop", metav1.DeleteOptions{})
			return fmt.Errorf("duplicate admitted with team-a synced again")
		}
		return nil
	})
	mustKubectl(t, config("      []", ""), "apply", "-f", "-")
	eventually(t, 30*time.Second, duplicateAdmitted)

	mustKubectl(t, "", "delete", "constrainttemplate", "k8suniqueingresshost")
	mustKubectl(t, "", "-n", sys, "delete", "config", "config")
}
