package e2e

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	disallowedTagsTemplate   = "examples/disallowed-tags/template.yaml"
	disallowedTagsConstraint = "examples/disallowed-tags/constraint.yaml"
)

func applyDisallowedTags(t *testing.T, replica string) {
	t.Helper()
	mustKubectl(t, readFile(t, disallowedTagsTemplate), "apply", "-f", "-")
	eventually(t, 30*time.Second, func() error {
		_, err := kubectl(t, readFile(t, disallowedTagsConstraint), "apply", "-f", "-")
		return err
	})
	waitEnforced(t, "K8sDisallowedTags", "no-latest", replica)
	t.Cleanup(func() {
		_, _ = kubectl(t, "", "delete", "constrainttemplate", "k8sdisallowedtags", "--ignore-not-found")
	})
}

func mustBeDenied(t *testing.T, ns, name, want string) {
	t.Helper()
	_, err := createPod(t, pod(name, ns, "nginx:latest", nil))
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("pod %s/%s with nginx:latest: want a denial naming %s, got %v", ns, name, want, err)
	}
}

// waitWebhookURL waits until the webhook configuration points at p (its
// leader re-registers it with its own URL).
func waitWebhookURL(t *testing.T, name string, p *bouncerProcess) {
	t.Helper()
	eventually(t, 30*time.Second, func() error {
		vwc, err := kube(t).AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if u := vwc.Webhooks[0].ClientConfig.URL; u == nil || !strings.HasPrefix(*u, p.url) {
			return fmt.Errorf("webhook points at %v, want %s", u, p.url)
		}
		return nil
	})
}

func jsonpath(t *testing.T, resource, name, path string) string {
	t.Helper()
	out, err := kubectl(t, "", "get", resource, name, "-o", "jsonpath="+path)
	if err != nil {
		t.Fatalf("kubectl get %s %s: %v: %s", resource, name, err, out)
	}
	return strings.TrimSpace(out)
}

// TestLastGoodSurvivesOutage: with the only replica paused (SIGSTOP), the
// policies webhook cannot answer, so it fails open and a broken template
// and an invalid constraint are stored. The paused replica, once resumed,
// keeps enforcing the last good versions; a replica started afterwards
// (which never saw them in memory) enforces them too, from status.lastGood,
// and only then turns ready.
func TestLastGoodSurvivesOutage(t *testing.T) {
	const ns, name = "lastgood", "bouncer-lastgood"
	createNamespace(t, ns)
	a := startBouncer(t, name, "--pod-name", name+"-a", "--failure-policy", "Fail")
	applyDisallowedTags(t, name+"-a")
	mustBeDenied(t, ns, "before", "[no-latest]")

	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			_ = a.cmd.Process.Signal(syscall.SIGCONT)
			resumed = true
		}
	}
	t.Cleanup(resume)
	broken := strings.TrimRight(readFile(t, disallowedTagsConstraint), "\n") + "\n  enforcementAction: block\n"
	mustKubectl(t, broken, "apply", "-f", "-")
	brokenTemplate := strings.Replace(readFile(t, disallowedTagsTemplate), "tag == input.parameters.tags[_]", "tag == input.parameters.tags[_", 1)
	mustKubectl(t, brokenTemplate, "apply", "-f", "-")
	resume()

	// The resumed replica reports both as not enforced, with the reason,
	// and still denies.
	eventually(t, 30*time.Second, func() error {
		r := jsonpath(t, "k8sdisallowedtags.constraints.gatekeeper.sh", "no-latest", `{.status.conditions[?(@.type=="Ready")].reason}`)
		if r != "InvalidUpdate" {
			return fmt.Errorf("constraint Ready reason %q, want InvalidUpdate", r)
		}
		r = jsonpath(t, "constrainttemplate", "k8sdisallowedtags", `{.status.conditions[?(@.type=="Ready")].reason}`)
		if r != "InvalidUpdate" {
			return fmt.Errorf("template Ready reason %q, want InvalidUpdate", r)
		}
		return nil
	})
	msg := jsonpath(t, "k8sdisallowedtags.constraints.gatekeeper.sh", "no-latest", `{.status.conditions[?(@.type=="Ready")].message}`)
	if !strings.Contains(msg, "block") || !strings.Contains(msg, "stays enforced") {
		t.Errorf("the constraint's Ready message must give the reason and what stays enforced: %q", msg)
	}
	mustBeDenied(t, ns, "after-resume", "[no-latest]")

	// A second replica of the same installation starts now: it must enforce
	// the last good versions before it is ready. Stopping the first hands
	// it the lease, and with it the webhook configuration.
	b := startBouncer(t, name, "--pod-name", name+"-b", "--failure-policy", "Fail")
	a.stop()
	waitWebhookURL(t, name, b)
	mustBeDenied(t, ns, "new-replica", "[no-latest]")
	if _, err := createPod(t, pod("pinned", ns, "nginx:1.27.3", nil)); err != nil {
		t.Fatalf("a pinned image must be admitted: %v", err)
	}
	if g := jsonpath(t, "constrainttemplate", "k8sdisallowedtags", "{.status.lastGood.generation}"); g != "1" {
		t.Errorf("template status.lastGood.generation = %q, want 1", g)
	}

	// The fixing update is enforced again.
	mustKubectl(t, readFile(t, disallowedTagsTemplate), "apply", "-f", "-")
	mustKubectl(t, readFile(t, disallowedTagsConstraint), "apply", "-f", "-")
	eventually(t, 30*time.Second, func() error {
		r := jsonpath(t, "k8sdisallowedtags.constraints.gatekeeper.sh", "no-latest", `{.status.conditions[?(@.type=="Ready")].status}`)
		if r != "True" {
			return fmt.Errorf("constraint Ready %q after the fix", r)
		}
		return nil
	})
}

// TestConstraintReturnsWhenTemplateFitsAgain: a template change whose
// schema no longer fits a constraint drops it (status says so); changing
// the schema back enforces the constraint again.
func TestConstraintReturnsWhenTemplateFitsAgain(t *testing.T) {
	const ns, name = "refit", "bouncer-refit"
	createNamespace(t, ns)
	startBouncer(t, name, "--failure-policy", "Fail")
	applyDisallowedTags(t, name)
	mustBeDenied(t, ns, "before", "[no-latest]")

	schema := "tags:\n              type: array\n              description: Tags that may not be used, e.g. latest.\n              items:\n                type: string"
	tmpl := readFile(t, disallowedTagsTemplate)
	if !strings.Contains(tmpl, schema) {
		t.Fatal("the example template changed; update this test")
	}
	mustKubectl(t, strings.Replace(tmpl, schema, "tags:\n              type: integer", 1), "apply", "-f", "-")
	eventually(t, 30*time.Second, func() error {
		out := jsonpath(t, "k8sdisallowedtags.constraints.gatekeeper.sh", "no-latest", `{.status.byPod[?(@.id=="`+name+`")].enforced}`)
		if out == "true" {
			return fmt.Errorf("constraint still reported enforced after its template's schema stopped fitting")
		}
		return nil
	})
	if _, err := createPod(t, pod("unfit", ns, "nginx:latest", nil)); err != nil {
		t.Fatalf("with the constraint dropped, the pod must be admitted: %v", err)
	}
	mustKubectl(t, tmpl, "apply", "-f", "-")
	waitEnforced(t, "K8sDisallowedTags", "no-latest", name)
	mustBeDenied(t, ns, "after", "[no-latest]")
}
