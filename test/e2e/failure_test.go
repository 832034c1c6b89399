package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestWebhookDown shows what the failure policy means when every replica is
// gone: Fail refuses writes, Ignore admits them, kube-system is never blocked.
func TestWebhookDown(t *testing.T) {
	const ns = "outage"
	createNamespace(t, ns)

	fail := startBouncer(t, "bouncer-fail", "--failure-policy", "Fail")
	fail.stop()
	_, err := createPod(t, pod("while-down", ns, "nginx:1.27.3", nil))
	if err == nil || !strings.Contains(err.Error(), "failed calling webhook") {
		t.Fatalf("failurePolicy Fail with the webhook down must refuse, got %v", err)
	}
	if _, err := createPod(t, pod("system-while-down", "kube-system", "nginx:1.27.3", nil)); err != nil {
		t.Fatalf("kube-system must never be blocked: %v", err)
	}
	if err := kube(t).AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(context.Background(), "bouncer-fail", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := kube(t).AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), "bouncer-fail-mutating", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	ignore := startBouncer(t, "bouncer-ignore", "--failure-policy", "Ignore")
	ignore.stop()
	eventually(t, 10*time.Second, func() error {
		_, err := createPod(t, pod("while-down-ignored", ns, "nginx:1.27.3", nil))
		return err
	})
}
