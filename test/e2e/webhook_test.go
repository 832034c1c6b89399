package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

var getOpts = metav1.GetOptions{}

func readAll(resp *http.Response) string {
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func readFile(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustKubectl(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, err := kubectl(t, stdin, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func createNamespace(t *testing.T, name string) {
	t.Helper()
	_, err := kube(t).CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	// Pods need the namespace's default ServiceAccount (controller-manager).
	eventually(t, 30*time.Second, func() error {
		_, err := kube(t).CoreV1().ServiceAccounts(name).Get(context.Background(), "default", getOpts)
		return err
	})
}

func pod(name, ns, image string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
	}
}

// createPod creates a Pod and returns the error and the admission warnings.
func createPod(t *testing.T, p *corev1.Pod) ([]string, error) {
	t.Helper()
	cfg := rest.CopyConfig(restConfig())
	wh := &warnings{}
	cfg.WarningHandler = wh
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.CoreV1().Pods(p.Namespace).Create(context.Background(), p, metav1.CreateOptions{})
	return wh.list(), err
}

type warnings struct {
	mu sync.Mutex
	w  []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.w = append(w.w, text)
}

func (w *warnings) list() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.w...)
}

// waitEnforced waits until a constraint reports enforced by the replica.
func waitEnforced(t *testing.T, kind, name, replica string) {
	t.Helper()
	eventually(t, 60*time.Second, func() error {
		out, err := kubectl(t, "", "get", strings.ToLower(kind)+".constraints.gatekeeper.sh", name, "-o", "jsonpath={.status.byPod[?(@.id==\""+replica+"\")].enforced}")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if strings.TrimSpace(out) != "true" {
			return fmt.Errorf("not enforced yet: %q", out)
		}
		return nil
	})
}

// TestAdmission covers the webhook's verdicts on a real apiserver.
func TestAdmission(t *testing.T) {
	b := startBouncer(t, "bouncer-admission", "--failure-policy", "Fail")
	const ns = "shop"
	createNamespace(t, ns)
	mustKubectl(t, readFile(t, "examples/disallowed-tags/template.yaml"), "apply", "-f", "-")
	mustKubectl(t, readFile(t, "examples/disallowed-tags/constraint.yaml"), "apply", "-f", "-")
	waitEnforced(t, "K8sDisallowedTags", "no-latest", "bouncer-admission")

	t.Run("latest tag is refused with the constraint named", func(t *testing.T) {
		_, err := createPod(t, pod("web-latest", ns, "nginx:latest", nil))
		if err == nil {
			t.Fatal("pod with nginx:latest was admitted")
		}
		if !strings.Contains(err.Error(), "[no-latest]") || !strings.Contains(err.Error(), "disallowed tag") {
			t.Fatalf("denial does not name the constraint and reason: %v", err)
		}
	})
	t.Run("pinned tag is admitted", func(t *testing.T) {
		if _, err := createPod(t, pod("web-pinned", ns, "nginx:1.27.3", nil)); err != nil {
			t.Fatalf("pinned pod refused: %v", err)
		}
	})
	t.Run("denial leaves an event and is counted", func(t *testing.T) {
		eventually(t, 30*time.Second, func() error {
			evs, err := kube(t).CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "reason=FailedAdmission"})
			if err != nil {
				return err
			}
			for _, e := range evs.Items {
				if e.InvolvedObject.Name == "web-latest" && strings.Contains(e.Message, "no-latest") {
					return nil
				}
			}
			return fmt.Errorf("no FailedAdmission event for web-latest among %d", len(evs.Items))
		})
		m := b.metrics(t)
		if !strings.Contains(m, `bouncer_admission_requests_total{verdict="deny",webhook="resources"}`) {
			t.Fatalf("metrics do not count the denial:\n%s", grepLines(m, "bouncer_"))
		}
		if !strings.Contains(m, `bouncer_violations_total{enforcement_action="deny"}`) {
			t.Fatalf("metrics do not count the violation:\n%s", grepLines(m, "bouncer_"))
		}
	})
	t.Run("kube-system is never reviewed", func(t *testing.T) {
		if _, err := createPod(t, pod("sys-latest", "kube-system", "nginx:latest", nil)); err != nil {
			t.Fatalf("kube-system pod refused: %v", err)
		}
	})
	t.Run("deployment without expansion: its ReplicaSet records the refusal", func(t *testing.T) {
		mustKubectl(t, readFile(t, "examples/disallowed-tags/samples/deployment-latest.yaml"), "apply", "-f", "-")
		eventually(t, 60*time.Second, func() error {
			evs, err := kube(t).CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "reason=FailedCreate"})
			if err != nil {
				return err
			}
			for _, e := range evs.Items {
				if e.InvolvedObject.Kind == "ReplicaSet" && strings.Contains(e.Message, "no-latest") {
					return nil
				}
			}
			return fmt.Errorf("no FailedCreate event on the ReplicaSet yet (%d events)", len(evs.Items))
		})
		mustKubectl(t, "", "-n", ns, "delete", "deployment", "web", "--wait=false")
	})
	t.Run("deployment with expansion is refused itself", func(t *testing.T) {
		mustKubectl(t, readFile(t, "examples/disallowed-tags/expansion.yaml"), "apply", "-f", "-")
		eventually(t, 30*time.Second, func() error {
			out, err := kubectl(t, strings.Replace(readFile(t, "examples/disallowed-tags/samples/deployment-latest.yaml"), "name: web\n", "name: web2\n", 1), "apply", "-f", "-")
			if err == nil {
				mustKubectl(t, "", "-n", ns, "delete", "deployment", "web2", "--wait=false")
				return errors.New("deployment admitted; expansion not loaded yet")
			}
			if !strings.Contains(out, "[Implied by expand-workloads]") {
				return fmt.Errorf("unexpected refusal: %s", out)
			}
			return nil
		})
		mustKubectl(t, "", "delete", "expansiontemplate", "expand-workloads")
	})
	t.Run("warn returns warnings and admits, dryrun admits", func(t *testing.T) {
		mustKubectl(t, readFile(t, "test/e2e/testdata/required-labels.yaml"), "apply", "-f", "-")
		constraint := func(name, action string) string {
			return fmt.Sprintf(`apiVersion: constraints.gatekeeper.sh/v1beta1
kind: E2ERequiredLabels
metadata:
  name: %s
spec:
  enforcementAction: %s
  match:
    kinds: [{apiGroups: [""], kinds: ["Pod"]}]
    namespaces: [%s]
  parameters:
    labels: ["%s"]
`, name, action, ns, name)
		}
		eventually(t, 30*time.Second, func() error {
			_, err := kubectl(t, constraint("team", "warn"), "apply", "-f", "-")
			return err
		})
		mustKubectl(t, constraint("owner", "dryrun"), "apply", "-f", "-")
		waitEnforced(t, "E2ERequiredLabels", "team", "bouncer-admission")
		waitEnforced(t, "E2ERequiredLabels", "owner", "bouncer-admission")
		w, err := createPod(t, pod("warned", ns, "nginx:1.27.3", nil))
		if err != nil {
			t.Fatalf("warn/dryrun constraint refused the pod: %v", err)
		}
		joined := strings.Join(w, "\n")
		if !strings.Contains(joined, "[team] label <team> is required") {
			t.Fatalf("warning missing: %q", w)
		}
		if strings.Contains(joined, "owner") {
			t.Fatalf("dryrun must not warn: %q", w)
		}
		out, err := kubectl(t, "", "-n", ns, "run", "warned-kubectl", "--image=nginx:1.27.3")
		if err != nil || !strings.Contains(out, "Warning: [team]") {
			t.Fatalf("kubectl does not show the warning: %v\n%s", err, out)
		}
		mustKubectl(t, "", "delete", "e2erequiredlabels", "team", "owner")
	})
	t.Run("policy changes apply within seconds without restart", func(t *testing.T) {
		// Update: allow latest by switching the constraint's tag list.
		mustKubectl(t, strings.Replace(readFile(t, "examples/disallowed-tags/constraint.yaml"), `tags: ["latest"]`, `tags: ["canary"]`, 1), "apply", "-f", "-")
		eventually(t, 20*time.Second, func() error {
			_, err := createPod(t, pod("after-update", ns, "nginx:latest", nil))
			return err
		})
		if _, err := createPod(t, pod("canary", ns, "nginx:canary", nil)); err == nil {
			t.Fatal("canary tag admitted after the update")
		}
		// Delete the constraint: canary is admitted.
		mustKubectl(t, "", "delete", "k8sdisallowedtags", "no-latest")
		eventually(t, 20*time.Second, func() error {
			_, err := createPod(t, pod("canary", ns, "nginx:canary", nil))
			return err
		})
		// Create it again: latest is refused again.
		mustKubectl(t, readFile(t, "examples/disallowed-tags/constraint.yaml"), "apply", "-f", "-")
		eventually(t, 20*time.Second, func() error {
			if _, err := createPod(t, pod("latest-again", ns, "nginx:latest", nil)); err == nil {
				_ = kube(t).CoreV1().Pods(ns).Delete(context.Background(), "latest-again", metav1.DeleteOptions{})
				return errors.New("still admitted")
			}
			return nil
		})
	})
	t.Run("broken rego and bad parameters are refused at apply", func(t *testing.T) {
		out, err := kubectl(t, readFile(t, "test/e2e/testdata/broken-template.yaml"), "apply", "-f", "-")
		if err == nil || !strings.Contains(out, "e2ebroken") || !strings.Contains(out, "rego") {
			t.Fatalf("broken template not refused with the reason: %v\n%s", err, out)
		}
		bad := strings.Replace(readFile(t, "examples/disallowed-tags/constraint.yaml"), `tags: ["latest"]`, `tags: "latest"`, 1)
		bad = strings.Replace(bad, "name: no-latest", "name: bad-params", 1)
		out, err = kubectl(t, bad, "apply", "-f", "-")
		if err == nil || !strings.Contains(out, "tags") {
			t.Fatalf("constraint with bad parameters not refused with the reason: %v\n%s", err, out)
		}
	})
	t.Run("deleting the template removes its constraint kind", func(t *testing.T) {
		mustKubectl(t, "", "delete", "constrainttemplate", "k8sdisallowedtags")
		eventually(t, 30*time.Second, func() error {
			_, err := kubectl(t, "", "get", "crd", "k8sdisallowedtags.constraints.gatekeeper.sh")
			if err == nil {
				return errors.New("constraint CRD still present")
			}
			_, err = createPod(t, pod("free-latest", ns, "nginx:latest", nil))
			return err
		})
	})
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
