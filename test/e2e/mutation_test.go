package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Mutators of this test match only Pods in its namespaces: the cluster is
// shared, and a namespaces list alone lets cluster-scoped objects match (as
// in Gatekeeper), hence scope Namespaced.
const mutationPolicies = `
apiVersion: mutations.gatekeeper.sh/v1
kind: Assign
metadata:
  name: mut-drop-all
spec:
  applyTo:
  - groups: [""]
    kinds: [Pod]
    versions: [v1]
  match:
    scope: Namespaced
    kinds: [{apiGroups: [""], kinds: [Pod]}]
    namespaces: [mut-shop]
  location: "spec.containers[name: *].securityContext.capabilities.drop"
  parameters:
    assign:
      value: [ALL]
---
apiVersion: mutations.gatekeeper.sh/v1
kind: Assign
metadata:
  name: mut-run-as-non-root
spec:
  applyTo:
  - groups: [""]
    kinds: [Pod]
    versions: [v1]
  match:
    scope: Namespaced
    kinds: [{apiGroups: [""], kinds: [Pod]}]
    namespaces: [mut-shop]
  location: spec.securityContext.runAsNonRoot
  parameters:
    assign:
      value: true
---
apiVersion: mutations.gatekeeper.sh/v1
kind: AssignMetadata
metadata:
  name: mut-owner
spec:
  match:
    scope: Namespaced
    kinds: [{apiGroups: [""], kinds: [Pod]}]
    namespaces: [mut-shop]
  location: metadata.labels.owner
  parameters:
    assign:
      value: platform
`

// Two mutators that disagree about spec.containers[].env: a keyed list for
// one, an object for the other.
const conflictingMutators = `
apiVersion: mutations.gatekeeper.sh/v1
kind: Assign
metadata:
  name: mut-env-list
spec:
  applyTo:
  - groups: [""]
    kinds: [Pod]
    versions: [v1]
  match:
    scope: Namespaced
    kinds: [{apiGroups: [""], kinds: [Pod]}]
    namespaces: [mut-shop]
  location: "spec.containers[name: *].env[name: MODE].value"
  parameters:
    assign:
      value: strict
---
apiVersion: mutations.gatekeeper.sh/v1
kind: Assign
metadata:
  name: mut-env-object
spec:
  applyTo:
  - groups: [""]
    kinds: [Pod]
    versions: [v1]
  match:
    scope: Namespaced
    kinds: [{apiGroups: [""], kinds: [Pod]}]
    namespaces: [mut-shop]
  location: "spec.containers[name: *].env.MODE"
  parameters:
    assign:
      value: strict
`

// A constraint that every container drops ALL capabilities, and the
// expansion that judges Deployments by their Pods.
const dropAllPolicy = `
apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: mutrequiredropall
spec:
  crd:
    spec:
      names:
        kind: MutRequireDropAll
  targets:
  - target: admission.k8s.gatekeeper.sh
    rego: |
      package mutrequiredropall
      violation[{"msg": msg}] {
        c := input.review.object.spec.containers[_]
        not drops_all(c)
        msg := sprintf("container <%v> must drop ALL capabilities", [c.name])
      }
      drops_all(c) {
        c.securityContext.capabilities.drop[_] == "ALL"
      }
---
apiVersion: expansion.gatekeeper.sh/v1beta1
kind: ExpansionTemplate
metadata:
  name: mut-expand-deployments
spec:
  applyTo:
  - groups: [apps]
    kinds: [Deployment, ReplicaSet]
    versions: [v1]
  templateSource: spec.template
  generatedGVK:
    kind: Pod
    group: ""
    version: v1
`

const dropAllConstraint = `
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: MutRequireDropAll
metadata:
  name: mut-require-drop-all
spec:
  match:
    kinds:
    - apiGroups: [""]
      kinds: [Pod]
    namespaces: [mut-shop, mut-plain]
`

// waitMutator waits until a mutator's status entry for replica satisfies ok.
func waitMutator(t *testing.T, kind, name, replica string, ok func(entry map[string]any) error) {
	t.Helper()
	eventually(t, 60*time.Second, func() error {
		out, err := kubectl(t, "", "get", strings.ToLower(kind)+".mutations.gatekeeper.sh", name, "-o", "jsonpath={.status.byPod}")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		var byPod []map[string]any
		if strings.TrimSpace(out) != "" {
			if err := json.Unmarshal([]byte(out), &byPod); err != nil {
				return fmt.Errorf("status.byPod %q: %v", out, err)
			}
		}
		for _, e := range byPod {
			if e["id"] == replica {
				return ok(e)
			}
		}
		return fmt.Errorf("%s %s: no status from %s yet: %s", kind, name, replica, out)
	})
}

func enforced(e map[string]any) error {
	if e["enforced"] != true || e["errors"] != nil {
		return fmt.Errorf("not enforced: %v", e)
	}
	return nil
}

func schemaConflict(e map[string]any) error {
	errs, _ := e["errors"].([]any)
	if e["enforced"] == true || len(errs) != 1 {
		return fmt.Errorf("want not enforced with one error: %v", e)
	}
	first, _ := errs[0].(map[string]any)
	if first["type"] != "schema_conflict" {
		return fmt.Errorf("want an error of type schema_conflict: %v", e)
	}
	return nil
}

func TestMutation(t *testing.T) {
	const replica = "bouncer-mutation"
	b := startBouncer(t, replica, "--failure-policy", "Fail", "--mutation-annotations", "--log-mutations")
	ctx := context.Background()
	for _, ns := range []string{"mut-shop", "mut-plain"} {
		createNamespace(t, ns)
		t.Cleanup(func() { _ = kube(t).CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}) })
	}
	t.Cleanup(func() {
		_, _ = kubectl(t, mutationPolicies+"---"+conflictingMutators+"---"+dropAllConstraint+"---"+dropAllPolicy, "delete", "--ignore-not-found", "-f", "-")
	})
	// The webhook is registered only for what the mutators change: with
	// none in the cluster, the apiserver calls it for nothing.
	registered := func(want string) {
		t.Helper()
		eventually(t, 60*time.Second, func() error {
			mwc, err := kube(t).AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, replica+"-mutating", getOpts)
			if err != nil {
				return err
			}
			if p := mwc.Webhooks[0].ReinvocationPolicy; p == nil || *p != "IfNeeded" {
				return fmt.Errorf("reinvocationPolicy %v", p)
			}
			var got []string
			for _, r := range mwc.Webhooks[0].Rules {
				got = append(got, fmt.Sprintf("%v %v %v %v", r.Operations, r.APIGroups, r.APIVersions, r.Resources))
			}
			if strings.Join(got, "; ") != want {
				return fmt.Errorf("rules %q, want %q", got, want)
			}
			return nil
		})
	}
	registered("")
	podAssigns := mutationPolicies[:strings.Index(mutationPolicies, "---\napiVersion: mutations.gatekeeper.sh/v1\nkind: AssignMetadata")]
	mustKubectl(t, podAssigns, "apply", "-f", "-")
	waitMutator(t, "Assign", "mut-drop-all", replica, enforced)
	registered("[CREATE UPDATE] [] [v1] [pods]")
	// An AssignMetadata applies to every kind its match selects (Pods, in
	// any version): that rule covers the Assigns' too.
	mustKubectl(t, mutationPolicies, "apply", "-f", "-")
	waitMutator(t, "Assign", "mut-drop-all", replica, enforced)
	waitMutator(t, "Assign", "mut-run-as-non-root", replica, enforced)
	waitMutator(t, "AssignMetadata", "mut-owner", replica, enforced)
	registered("[CREATE UPDATE] [] [*] [pods]")

	t.Run("pod stored with the defaults", func(t *testing.T) {
		if _, err := createPod(t, pod("bare", "mut-shop", "nginx:1.27", nil)); err != nil {
			t.Fatal(err)
		}
		p, err := kube(t).CoreV1().Pods("mut-shop").Get(ctx, "bare", getOpts)
		if err != nil {
			t.Fatal(err)
		}
		sc := p.Spec.Containers[0].SecurityContext
		if sc == nil || sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
			t.Errorf("container securityContext %+v, want capabilities.drop [ALL]", sc)
		}
		if psc := p.Spec.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
			t.Errorf("pod securityContext %+v, want runAsNonRoot true", psc)
		}
		if p.Labels["owner"] != "platform" {
			t.Errorf("labels %v, want owner=platform", p.Labels)
		}
		t.Logf("kubectl get pod bare:\n%s", mustKubectl(t, "", "get", "pod", "-n", "mut-shop", "bare", "-o", "jsonpath={.metadata.labels}{\"\\n\"}{.metadata.annotations}{\"\\n\"}{.spec.securityContext}{\"\\n\"}{.spec.containers[0].securityContext}"))
		want := "Assign/mut-drop-all,Assign/mut-run-as-non-root,AssignMetadata/mut-owner"
		if got := p.Annotations["bouncer.dev/mutations"]; got != want {
			t.Errorf("bouncer.dev/mutations = %q, want %q", got, want)
		}
		// Outside the mutators' namespaces nothing changes.
		if _, err := createPod(t, pod("bare", "mut-plain", "nginx:1.27", nil)); err != nil {
			t.Fatal(err)
		}
		plain, err := kube(t).CoreV1().Pods("mut-plain").Get(ctx, "bare", getOpts)
		if err != nil {
			t.Fatal(err)
		}
		if plain.Spec.Containers[0].SecurityContext != nil || plain.Labels["owner"] != "" {
			t.Errorf("Pod outside the mutators' namespaces mutated: %+v %v", plain.Spec.Containers[0].SecurityContext, plain.Labels)
		}
		// An UPDATE runs the mutators again: the stored Pod is already
		// mutated, so nothing changes (a patch to its immutable spec would
		// make the apiserver refuse the update).
		mustKubectl(t, "", "label", "pod", "-n", "mut-shop", "bare", "touched=yes")
		updated, err := kube(t).CoreV1().Pods("mut-shop").Get(ctx, "bare", getOpts)
		if err != nil {
			t.Fatal(err)
		}
		if updated.Labels["touched"] != "yes" || updated.Annotations["bouncer.dev/mutations"] != p.Annotations["bouncer.dev/mutations"] {
			t.Errorf("after the update: labels %v annotations %v", updated.Labels, updated.Annotations)
		}
		eventually(t, 30*time.Second, func() error {
			evs, err := kube(t).CoreV1().Events("mut-shop").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=bare,reason=Mutated"})
			if err != nil {
				return err
			}
			if len(evs.Items) == 0 {
				return fmt.Errorf("no Mutated event on mut-shop/bare")
			}
			if !strings.Contains(evs.Items[0].Message, "Assign/mut-drop-all") {
				return fmt.Errorf("event message %q", evs.Items[0].Message)
			}
			return nil
		})
		m := b.metrics(t)
		if !strings.Contains(m, `bouncer_mutation_requests_total{outcome="mutated"}`) || !strings.Contains(m, `bouncer_mutators_applied_total{kind="Assign",name="mut-drop-all"}`) {
			t.Errorf("mutation metrics missing:\n%s", grepLines(m, "bouncer_mutat"))
		}
	})

	t.Run("AssignMetadata never overwrites a label", func(t *testing.T) {
		if _, err := createPod(t, pod("owned", "mut-shop", "nginx:1.27", map[string]string{"owner": "alice"})); err != nil {
			t.Fatal(err)
		}
		p, err := kube(t).CoreV1().Pods("mut-shop").Get(ctx, "owned", getOpts)
		if err != nil {
			t.Fatal(err)
		}
		if p.Labels["owner"] != "alice" {
			t.Errorf("owner label %q, want alice kept", p.Labels["owner"])
		}
		if strings.Contains(p.Annotations["bouncer.dev/mutations"], "AssignMetadata") {
			t.Errorf("annotation names AssignMetadata, which changed nothing: %q", p.Annotations["bouncer.dev/mutations"])
		}
	})

	t.Run("conflicting mutators are reported and neither applies", func(t *testing.T) {
		mustKubectl(t, conflictingMutators, "apply", "-f", "-")
		waitMutator(t, "Assign", "mut-env-list", replica, schemaConflict)
		waitMutator(t, "Assign", "mut-env-object", replica, schemaConflict)
		t.Logf("kubectl get assign mut-env-list:\n%s", mustKubectl(t, "", "get", "assign.mutations.gatekeeper.sh", "mut-env-list", "-o", "jsonpath={.status.byPod}"))
		if _, err := createPod(t, pod("conflicted", "mut-shop", "nginx:1.27", nil)); err != nil {
			t.Fatal(err)
		}
		p, err := kube(t).CoreV1().Pods("mut-shop").Get(ctx, "conflicted", getOpts)
		if err != nil {
			t.Fatal(err)
		}
		if env := p.Spec.Containers[0].Env; len(env) != 0 {
			t.Errorf("env %+v: a conflicting mutator applied", env)
		}
		// The other mutators still apply.
		if sc := p.Spec.Containers[0].SecurityContext; sc == nil || sc.Capabilities == nil || len(sc.Capabilities.Drop) == 0 {
			t.Errorf("drop-all did not apply beside the conflict: %+v", sc)
		}
		// Removing one side ends the conflict: the other applies.
		mustKubectl(t, "", "delete", "assign.mutations.gatekeeper.sh", "mut-env-object")
		waitMutator(t, "Assign", "mut-env-list", replica, enforced)
		if _, err := createPod(t, pod("resolved", "mut-shop", "nginx:1.27", nil)); err != nil {
			t.Fatal(err)
		}
		p, err = kube(t).CoreV1().Pods("mut-shop").Get(ctx, "resolved", getOpts)
		if err != nil {
			t.Fatal(err)
		}
		if env := p.Spec.Containers[0].Env; len(env) != 1 || env[0].Name != "MODE" || env[0].Value != "strict" {
			t.Errorf("env %+v, want MODE=strict once the conflict is gone", env)
		}
	})

	t.Run("a broken update keeps the last good mutator", func(t *testing.T) {
		// AssignMetadata may only touch labels and annotations.
		broken := strings.Replace(mutationPolicies[strings.Index(mutationPolicies, "apiVersion: mutations.gatekeeper.sh/v1\nkind: AssignMetadata"):],
			"metadata.labels.owner", "metadata.name", 1)
		// The policies webhook refuses it, saying why.
		out, err := kubectl(t, broken, "apply", "-f", "-")
		if err == nil || !strings.Contains(out, "check-policies.bouncer.dev") || !strings.Contains(out, `spec.location: "metadata.name" must be metadata.labels.<key>`) {
			t.Fatalf("broken mutator: want it refused by the policies webhook with the reason, got %v: %s", err, out)
		}
		// Stored while Bouncer cannot answer (the policies webhook fails
		// open), it is reported and the last good version stays applied.
		if err := b.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		out, err = kubectl(t, broken, "apply", "-f", "-")
		if err := b.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		if err != nil {
			t.Fatalf("with Bouncer paused the policies webhook must fail open: %v: %s", err, out)
		}
		waitMutator(t, "AssignMetadata", "mut-owner", replica, func(e map[string]any) error {
			errs, _ := e["errors"].([]any)
			if e["enforced"] != true || len(errs) != 1 || errs[0].(map[string]any)["type"] != "ingest_error" {
				return fmt.Errorf("want the last good version enforced with an ingest_error: %v", e)
			}
			return nil
		})
		if _, err := createPod(t, pod("lastgood", "mut-shop", "nginx:1.27", nil)); err != nil {
			t.Fatal(err)
		}
		p, err := kube(t).CoreV1().Pods("mut-shop").Get(ctx, "lastgood", getOpts)
		if err != nil {
			t.Fatal(err)
		}
		if p.Labels["owner"] != "platform" {
			t.Errorf("labels %v: the last good AssignMetadata stopped applying", p.Labels)
		}
	})

	t.Run("a Deployment's expanded Pod is validated after mutation", func(t *testing.T) {
		mustKubectl(t, dropAllPolicy, "apply", "-f", "-")
		eventually(t, 60*time.Second, func() error {
			_, err := kubectl(t, dropAllConstraint, "apply", "-f", "-")
			return err
		})
		waitEnforced(t, "MutRequireDropAll", "mut-require-drop-all", replica)
		deployment := func(ns string) string {
			return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: %s}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: app, image: "nginx:1.27"}]}
`, ns)
		}
		// Where no mutator fixes the Pods, the Deployment is refused for them.
		eventually(t, 60*time.Second, func() error {
			out, err := kubectl(t, deployment("mut-plain"), "apply", "--dry-run=server", "-f", "-")
			if err == nil || !strings.Contains(out, "[Implied by mut-expand-deployments] container <app> must drop ALL capabilities") {
				return fmt.Errorf("want the expanded Pod denied in mut-plain, got %v: %s", err, out)
			}
			return nil
		})
		out, _ := kubectl(t, deployment("mut-plain"), "apply", "--dry-run=server", "-f", "-")
		t.Logf("Deployment in mut-plain:\n%s", out)
		// Where drop-all applies to the Pods, the same Deployment is admitted,
		// and the Pods it creates are stored mutated.
		mustKubectl(t, deployment("mut-shop"), "apply", "-f", "-")
		eventually(t, 60*time.Second, func() error {
			pods, err := kube(t).CoreV1().Pods("mut-shop").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
			if err != nil {
				return err
			}
			if len(pods.Items) == 0 {
				return fmt.Errorf("no Pods of the Deployment yet")
			}
			sc := pods.Items[0].Spec.Containers[0].SecurityContext
			if sc == nil || sc.Capabilities == nil || len(sc.Capabilities.Drop) == 0 || sc.Capabilities.Drop[0] != corev1.Capability("ALL") {
				return fmt.Errorf("Pod %s securityContext %+v", pods.Items[0].Name, sc)
			}
			return nil
		})
	})

	t.Run("mutation off removes the configuration", func(t *testing.T) {
		b.stop()
		startBouncer(t, replica, "--mutation=false")
		eventually(t, 60*time.Second, func() error {
			_, err := kube(t).AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, replica+"-mutating", getOpts)
			if err == nil {
				return fmt.Errorf("%s-mutating still registered", replica)
			}
			return nil
		})
	})
}
