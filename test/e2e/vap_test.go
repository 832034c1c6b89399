package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/load"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// TestGeneratedVAPMatchesWebhook: with --sync-vap Bouncer writes a native
// ValidatingAdmissionPolicy for a CEL template and a binding for its
// constraint; the apiserver alone (no Bouncer webhook) must then refuse
// exactly the sample Pods that Bouncer's webhook refuses.
func TestGeneratedVAPMatchesWebhook(t *testing.T) {
	const ns = "vapns"
	createNamespace(t, ns)
	samples := celSamples(t, ns)
	ctx := context.Background()

	// Phase 1: enforcement by the generated native policy only.
	syncer := startBouncer(t, "bouncer-vapsync", "--sync-vap", "--manage-webhook-config=false")
	mustKubectl(t, readFile(t, "examples/cel-disallowed-tags/template.yaml"), "apply", "-f", "-")
	eventually(t, 30*time.Second, func() error {
		_, err := kubectl(t, readFile(t, "examples/cel-disallowed-tags/constraint.yaml"), "apply", "-f", "-")
		return err
	})
	eventually(t, 30*time.Second, func() error {
		if _, err := kube(t).AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(ctx, "gatekeeper-k8sceldisallowedtags", getOpts); err != nil {
			return err
		}
		_, err := kube(t).AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Get(ctx, "gatekeeper-no-latest", getOpts)
		return err
	})
	// The apiserver compiles a new policy asynchronously: wait until the
	// known-bad sample is refused before comparing.
	eventually(t, 30*time.Second, func() error {
		if verdict(t, samples["pod-latest"]) == "" {
			return fmt.Errorf("native policy not in force yet")
		}
		return nil
	})
	native := verdicts(t, samples)
	if _, err := kube(t).CoreV1().Pods(ns).Create(ctx, samples["pod-latest"], metav1.CreateOptions{}); err == nil || !strings.Contains(err.Error(), "ValidatingAdmissionPolicy") {
		t.Fatalf("the refusal must come from the native policy: %v", err)
	}
	syncer.stop()
	if err := kube(t).AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Delete(ctx, "gatekeeper-no-latest", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		if verdict(t, samples["pod-latest"]) != "" {
			return fmt.Errorf("native policy still in force")
		}
		return nil
	})

	// Phase 2: enforcement by Bouncer's webhook only.
	startBouncer(t, "bouncer-vapwebhook")
	waitEnforced(t, "K8sCelDisallowedTags", "no-latest", "bouncer-vapwebhook")
	eventually(t, 30*time.Second, func() error {
		if verdict(t, samples["pod-latest"]) == "" {
			return fmt.Errorf("webhook not in force yet")
		}
		return nil
	})
	webhook := verdicts(t, samples)

	denied := 0
	for name := range samples {
		if (native[name] != "") != (webhook[name] != "") {
			t.Errorf("%s: native policy %q, Bouncer webhook %q", name, native[name], webhook[name])
		}
		if webhook[name] != "" {
			denied++
		}
	}
	if denied < 2 || denied == len(samples) {
		t.Fatalf("samples must include refused and admitted Pods; %d of %d refused", denied, len(samples))
	}
	mustKubectl(t, "", "delete", "constrainttemplate", "k8sceldisallowedtags")
}

// celSamples loads the CEL example's Pod samples into one namespace.
func celSamples(t *testing.T, ns string) map[string]*corev1.Pod {
	t.Helper()
	out := map[string]*corev1.Pod{}
	dir := filepath.Join(repoRoot, "examples", "cel-disallowed-tags", "samples")
	err := load.Walk([]string{dir}, load.Options{}, func(d *load.Document) error {
		if d.Kind() != "Pod" || d.Namespace() == "kube-system" {
			return nil
		}
		var p corev1.Pod
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(d.Object, &p); err != nil {
			return err
		}
		name := strings.TrimSuffix(filepath.Base(d.File), filepath.Ext(d.File))
		p.Namespace, p.Name = ns, name
		out[name] = &p
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := out["pod-latest"]; !ok || len(out) < 3 {
		t.Fatalf("unexpected samples: %v", keys(out))
	}
	return out
}

// verdict is "" when a server-side dry-run create is admitted, else the error.
func verdict(t *testing.T, p *corev1.Pod) string {
	_, err := kube(t).CoreV1().Pods(p.Namespace).Create(context.Background(), p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		return err.Error()
	}
	return ""
}

func verdicts(t *testing.T, samples map[string]*corev1.Pod) map[string]string {
	out := map[string]string{}
	for name, p := range samples {
		out[name] = verdict(t, p)
	}
	return out
}

func keys(m map[string]*corev1.Pod) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
