package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

var (
	policyReportGVR = schema.GroupVersionResource{Group: "wgpolicyk8s.io", Version: "v1alpha2", Resource: "policyreports"}
	openReportGVR   = schema.GroupVersionResource{Group: "openreports.io", Version: "v1alpha1", Resource: "reports"}
)

// constraintAudit reads a constraint's audit status as "total:ns/name,...".
func constraintAudit(t *testing.T, dyn dynamic.Interface, kind, name string) (int64, []string) {
	t.Helper()
	u, err := dyn.Resource(schema.GroupVersionResource{Group: "constraints.gatekeeper.sh", Version: "v1beta1", Resource: strings.ToLower(kind)}).
		Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return -1, nil
	}
	total, found, _ := unstructured.NestedInt64(u.Object, "status", "totalViolations")
	if !found {
		return -1, nil
	}
	vs, _, _ := unstructured.NestedSlice(u.Object, "status", "violations")
	var out []string
	for _, v := range vs {
		m := v.(map[string]any)
		out = append(out, fmt.Sprintf("%s %s/%s %s", m["kind"], m["namespace"], m["name"], m["enforcementAction"]))
	}
	return total, out
}

// reportResults reads every result of the audit's reports in a namespace
// as "policy ns/name result".
func reportResults(t *testing.T, dyn dynamic.Interface, gvr schema.GroupVersionResource, ns string) []string {
	t.Helper()
	list, err := dyn.Resource(gvr).Namespace(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=bouncer"})
	if err != nil {
		return []string{"error: " + err.Error()}
	}
	var out []string
	for _, r := range list.Items {
		rs, _, _ := unstructured.NestedSlice(r.Object, "results")
		for _, x := range rs {
			m := x.(map[string]any)
			if !strings.HasPrefix(m["policy"].(string), "audit-team") {
				continue // the unique-host results are checked apart
			}
			res := m["resources"].([]any)[0].(map[string]any)
			out = append(out, fmt.Sprintf("%s %s/%s %s", m["policy"], res["namespace"], res["name"], m["result"]))
		}
	}
	sort.Strings(out)
	return out
}

// applyBouncerCRDs applies Bouncer's CRDs (deploy/crds) and waits until
// they are served: on a fresh control plane the initial listing of a
// replica can otherwise race the CRDs it installs itself.
func applyBouncerCRDs(t *testing.T) {
	t.Helper()
	mustKubectl(t, "", "apply", "-k", filepath.Join(repoRoot, "deploy/crds"))
	mustKubectl(t, "", "wait", "--for=condition=Established", "--timeout=30s", "crd", "-l", "app.kubernetes.io/part-of=bouncer")
}

// auditedObject is one object of `bouncer audit -o json`.
type auditedObject struct {
	Namespace, Name string
	Violations      []struct{ ConstraintName, EnforcementAction string }
}

// auditJSON runs `bouncer audit -o json` against the cluster, expecting
// deny violations (exit code 1), and returns the objects it reports.
func auditJSON(t *testing.T, args ...string) []auditedObject {
	t.Helper()
	out, err := exec.Command(bouncerBin, append([]string{"audit", "--kubeconfig", cluster.Kubeconfig, "-o", "json"}, args...)...).Output()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("bouncer audit %v: %v (want exit code 1 for deny violations)\n%s", args, err, out)
	}
	var doc struct {
		Results []auditedObject `json:"results"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("bouncer audit -o json: %v\n%s", err, out)
	}
	return doc.Results
}

func equalOrErr(what string, got, want []string) error {
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		return fmt.Errorf("%s:\n%s\nwant:\n%s", what, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	return nil
}

// TestAudit: violating objects exist before the constraints; one pass
// later, constraint status and both report formats show them; fixing an
// object clears it through the watch (the interval is an hour); a leader
// killed and replaced leaves nothing stale or doubled; a deleted constraint
// takes its results along; the unique-host policy reports an existing
// duplicate; and `bouncer audit --policy` sees the same, read-only.
func TestAudit(t *testing.T) {
	ctx := context.Background()
	const sys, nsA, nsB = "audit-e2e-sys", "audit-e2e-a", "audit-e2e-b"
	dyn, err := dynamic.NewForConfig(restConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{sys, nsA, nsB} {
		createNamespace(t, ns)
	}
	policy := readFile(t, "test/e2e/testdata/audit/policy.yaml")
	t.Cleanup(func() {
		_, _ = kubectl(t, policy, "delete", "--ignore-not-found", "--wait=false", "-f", "-")
		_, _ = kubectl(t, readFile(t, "library/unique-ingress-host/template.yaml"), "delete", "--ignore-not-found", "--wait=false", "-f", "-")
		for _, ns := range []string{sys, nsA, nsB} {
			_ = kube(t).CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
		}
		for _, f := range []string{"deploy/reports/wgpolicyk8s.yaml", "deploy/reports/openreports.yaml"} {
			_, _ = kubectl(t, readFile(t, f), "delete", "--ignore-not-found", "--wait=false", "-f", "-")
		}
	})
	// Violating objects first: pods without a team label, and two Ingresses
	// sharing one host.
	for i := range 3 {
		for _, ns := range []string{nsA, nsB} {
			if _, err := kube(t).CoreV1().Pods(ns).Create(ctx, pod(fmt.Sprintf("p%d", i), ns, "nginx:1.27", nil), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, ns := range []string{nsA, nsB} {
		if _, err := kube(t).NetworkingV1().Ingresses(ns).Create(ctx, ingress("shop", ns, "audit-shop.example.com"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	serve := []string{"--namespace", sys, "--install-report-crds", "--audit-report-format", "both",
		"--audit-chunk-size", "2", "--audit-interval", "1h", "--leader-election-id", "audit-e2e"}
	applyBouncerCRDs(t)
	leader := startBouncer(t, "bouncer-audit", serve...)
	mustKubectl(t, fmt.Sprintf(`apiVersion: config.gatekeeper.sh/v1alpha1
kind: Config
metadata: {name: config, namespace: %s}
spec:
  sync:
    syncOnly: [{group: networking.k8s.io, version: v1, kind: Ingress}]
`, sys), "apply", "-f", "-")

	// Constraints second.
	mustKubectl(t, readFile(t, "library/unique-ingress-host/template.yaml"), "apply", "-f", "-")
	eventually(t, 30*time.Second, func() error {
		out, err := kubectl(t, policy, "apply", "-f", "-")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		out, err = kubectl(t, readFile(t, "library/unique-ingress-host/constraint.yaml"), "apply", "-f", "-")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})

	pods := func(action string, names ...string) []string {
		var out []string
		for _, n := range names {
			out = append(out, "Pod "+n+" "+action)
		}
		sort.Strings(out)
		return out
	}
	results := func(result string, policies []string, names ...string) []string {
		var out []string
		for _, p := range policies {
			for _, n := range names {
				out = append(out, p+" "+n+" "+result)
			}
		}
		sort.Strings(out)
		return out
	}
	both := []string{"audit-team-deny", "audit-team-dryrun"}
	all := []string{nsA + "/p0", nsA + "/p1", nsA + "/p2", nsB + "/p0", nsB + "/p1", nsB + "/p2"}
	check := func(deny []string, policies []string, inA []string) func() error {
		return func() error {
			total, shown := constraintAudit(t, dyn, "K8sAuditTeam", "audit-team-deny")
			sort.Strings(shown)
			if total != int64(len(deny)) {
				return fmt.Errorf("totalViolations %d, want %d (%v)", total, len(deny), shown)
			}
			if err := equalOrErr("status.violations", shown, pods("deny", deny...)); err != nil {
				return err
			}
			for _, gvr := range []schema.GroupVersionResource{policyReportGVR, openReportGVR} {
				if err := equalOrErr(gvr.Resource+" in "+nsA, reportResults(t, dyn, gvr, nsA), results("fail", policies, inA...)); err != nil {
					return err
				}
			}
			return nil
		}
	}
	eventually(t, 60*time.Second, check(all, both, all[:3]))
	// The duplicate host that existed before the policy is reported.
	eventually(t, 30*time.Second, func() error {
		if total, shown := constraintAudit(t, dyn, "K8sUniqueIngressHost", "unique-ingress-host"); total != 2 {
			return fmt.Errorf("unique-ingress-host: totalViolations %d (%v), want both Ingresses", total, shown)
		}
		return nil
	})

	// Fixing an object clears it through the watch, long before the next
	// pass (an hour away).
	label := func(ns, name string) {
		t.Helper()
		p, err := kube(t).CoreV1().Pods(ns).Get(ctx, name, getOpts)
		if err != nil {
			t.Fatal(err)
		}
		p.Labels = map[string]string{"team": "shop"}
		if _, err := kube(t).CoreV1().Pods(ns).Update(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	label(nsA, "p0")
	eventually(t, 10*time.Second, check(all[1:], both, all[1:3]))

	// The leader dies; while no one audits, one pod is fixed and one
	// deleted. The next leader reports what is there, nothing stale and
	// nothing twice.
	_ = leader.cmd.Process.Kill()
	<-leader.done
	label(nsA, "p1")
	if err := kube(t).CoreV1().Pods(nsB).Delete(ctx, "p0", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		_, err := kube(t).CoreV1().Pods(nsB).Get(ctx, "p0", getOpts)
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("p0 still there: %v", err)
	})
	startBouncer(t, "bouncer-audit", serve...)
	left := []string{nsA + "/p2", nsB + "/p1", nsB + "/p2"}
	eventually(t, 60*time.Second, check(left, both, left[:1]))

	// A deleted constraint takes its results along.
	mustKubectl(t, "", "delete", "k8sauditteam", "audit-team-dryrun")
	eventually(t, 15*time.Second, check(left, both[:1], left[:1]))

	// bouncer audit --policy, read-only, sees the same on the live cluster.
	var seen []string
	for _, o := range auditJSON(t, "--policy", filepath.Join(repoRoot, "test/e2e/testdata/audit/policy.yaml")) {
		for _, v := range o.Violations {
			seen = append(seen, fmt.Sprintf("%s %s/%s %s", v.ConstraintName, o.Namespace, o.Name, v.EnforcementAction))
		}
	}
	sort.Strings(seen)
	var want []string
	for _, n := range left {
		want = append(want, "audit-team-deny "+n+" deny", "audit-team-dryrun "+n+" dryrun")
	}
	sort.Strings(want)
	if err := equalOrErr("bouncer audit --policy", seen, want); err != nil {
		t.Error(err)
	}
	cmd := exec.Command(bouncerBin, "audit", "--kubeconfig", cluster.Kubeconfig, "--policy", filepath.Join(repoRoot, "test/e2e/testdata/audit/policy.yaml"))
	out, _ := cmd.Output()
	if !strings.Contains(string(out), "Pod "+nsA+"/p2: [K8sAuditTeam/audit-team-dryrun] (dryrun) p2 has no team label") {
		t.Errorf("bouncer audit --policy (human):\n%s", out)
	}
	t.Logf("bouncer audit --policy:\n%s", out)
	cmd = exec.Command(bouncerBin, "audit", "--kubeconfig", cluster.Kubeconfig, "-o", "openreports")
	cmd.Stderr = os.Stderr
	out, _ = cmd.Output()
	if !strings.Contains(string(out), "kind: Report\n") || !strings.Contains(string(out), "policy: audit-team-deny") {
		t.Errorf("bouncer audit -o openreports:\n%s", out)
	}
	t.Logf("bouncer audit -o openreports:\n%s", out)
	st, _ := kubectl(t, "", "get", "k8sauditteam", "audit-team-deny", "-o", "jsonpath={.status}")
	t.Logf("status of audit-team-deny: %s", st)
	polr, _ := kubectl(t, "", "get", "policyreports", "-A")
	t.Logf("kubectl get policyreports -A:\n%s", polr)
}
