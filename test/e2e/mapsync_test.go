package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/mapgen"
	"github.com/bouncer-policy/bouncer/pkg/mutation"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

const (
	mapSyncNS  = "mapsync-map"  // mutated by the MAPs only
	mapHookNS  = "mapsync-hook" // mutated by the webhook only
	mapSyncPod = `apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: %s
  labels: {app: web}
spec:
  initContainers:
  - name: init
    image: busybox
  containers:
  - name: app
    image: nginx
    securityContext:
      capabilities:
        drop: [NET_RAW]
  - name: sidecar
    image: envoy
    imagePullPolicy: IfNotPresent
    securityContext:
      allowPrivilegeEscalation: false
`
)

// An AssignImage: the generator has no MAP form of it.
const mapSyncImage = `apiVersion: mutations.gatekeeper.sh/v1alpha1
kind: AssignImage
metadata:
  name: mapsync-mirror
spec:
  applyTo:
  - groups: [""]
    kinds: [Pod]
    versions: [v1]
  match:
    scope: Namespaced
    kinds: [{apiGroups: [""], kinds: [Pod]}]
    namespaces: [mapsync-nowhere]
  location: "spec.containers[name: *].image"
  parameters:
    assignDomain: mirror.example.com
`

// Two mutators that disagree about spec.containers[].env (a keyed list for
// one, an object for the other): a schema conflict.
const mapSyncEnvList = `apiVersion: mutations.gatekeeper.sh/v1
kind: Assign
metadata:
  name: mapsync-env-list
spec:
  applyTo:
  - groups: [""]
    kinds: [Pod]
    versions: [v1]
  match:
    scope: Namespaced
    kinds: [{apiGroups: [""], kinds: [Pod]}]
    namespaces: [mapsync-nowhere]
  location: "spec.containers[name: *].env[name: MODE].value"
  parameters:
    assign:
      value: strict
`

const mapSyncEnvObject = `apiVersion: mutations.gatekeeper.sh/v1
kind: Assign
metadata:
  name: mapsync-env-object
spec:
  applyTo:
  - groups: [""]
    kinds: [Pod]
    versions: [v1]
  match:
    scope: Namespaced
    kinds: [{apiGroups: [""], kinds: [Pod]}]
    namespaces: [mapsync-nowhere]
  location: "spec.containers[name: *].env.MODE"
  parameters:
    assign:
      value: strict
`

// librarySyncMutators reads the library's mutators with their match
// narrowed to Pods in this test's two namespaces (the cluster is shared).
func librarySyncMutators(t *testing.T) (docs string, ids []mutation.ID) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, "library", "mutators", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("library mutators: %v (%d files)", err, len(files))
	}
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range strings.Split(string(b), "\n---\n") {
			u := &unstructured.Unstructured{}
			if err := yaml.Unmarshal([]byte(d), &u.Object); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if u.GetKind() == "" {
				continue
			}
			match := map[string]any{
				"scope":      "Namespaced",
				"kinds":      []any{map[string]any{"apiGroups": []any{""}, "kinds": []any{"Pod"}}},
				"namespaces": []any{mapSyncNS, mapHookNS},
			}
			if err := unstructured.SetNestedField(u.Object, match, "spec", "match"); err != nil {
				t.Fatal(err)
			}
			y, err := yaml.Marshal(u.Object)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, string(y))
			ids = append(ids, mutation.ID{Kind: u.GetKind(), Name: u.GetName()})
		}
	}
	return strings.Join(out, "---\n"), ids
}

// TestSyncMAP runs one Bouncer with --sync-map --mutation=false (its
// generated bindings exempt mapsync-hook) and one with only the mutating
// webhook (exempting mapsync-map), on the same library mutators: the
// generated policies appear, mutate Pods in mapsync-map as the webhook
// mutates the same Pod in mapsync-hook, and go with their mutator.
func TestSyncMAP(t *testing.T) {
	ctx := context.Background()
	mutators, ids := librarySyncMutators(t)
	if len(ids) < 6 {
		t.Fatalf("%d library mutators", len(ids))
	}
	// Registered first, so it runs after both Bouncers have stopped.
	t.Cleanup(func() {
		_, _ = kubectl(t, mutators+"---\n"+mapSyncImage+"---\n"+mapSyncEnvList+"---\n"+mapSyncEnvObject, "delete", "--ignore-not-found", "-f", "-")
		for _, n := range []string{"mapsync-env-list", "mapsync-env-object"} {
			id := mutation.ID{Kind: "Assign", Name: n}
			_ = kube(t).AdmissionregistrationV1().MutatingAdmissionPolicyBindings().Delete(ctx, mapgen.Name(id), metav1.DeleteOptions{})
			_ = kube(t).AdmissionregistrationV1().MutatingAdmissionPolicies().Delete(ctx, mapgen.Name(id), metav1.DeleteOptions{})
		}
		for _, id := range ids {
			_ = kube(t).AdmissionregistrationV1().MutatingAdmissionPolicyBindings().Delete(ctx, mapgen.Name(id), metav1.DeleteOptions{})
			_ = kube(t).AdmissionregistrationV1().MutatingAdmissionPolicies().Delete(ctx, mapgen.Name(id), metav1.DeleteOptions{})
		}
	})
	for _, ns := range []string{mapSyncNS, mapHookNS} {
		createNamespace(t, ns)
		t.Cleanup(func() { _ = kube(t).CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}) })
	}
	// A policy Bouncer wrote for a mutator deleted while no replica led:
	// the new leader prunes it.
	orphanSrc := strings.Replace(mapSyncEnvList, "name: mapsync-env-list", "name: mapsync-orphan", 1)
	var orphan apis.Mutator
	if err := yaml.Unmarshal([]byte(orphanSrc), &orphan); err != nil {
		t.Fatal(err)
	}
	g, err := mapgen.Generate(&orphan, mapgen.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = kube(t).AdmissionregistrationV1().MutatingAdmissionPolicyBindings().Delete(ctx, g.Binding.Name, metav1.DeleteOptions{})
		_ = kube(t).AdmissionregistrationV1().MutatingAdmissionPolicies().Delete(ctx, g.Policy.Name, metav1.DeleteOptions{})
	})
	if _, err := kube(t).AdmissionregistrationV1().MutatingAdmissionPolicies().Create(ctx, g.Policy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube(t).AdmissionregistrationV1().MutatingAdmissionPolicyBindings().Create(ctx, g.Binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const syncer, hook = "bouncer-mapsync", "bouncer-maphook"
	startBouncer(t, syncer, "--sync-map", "--mutation=false", "--exempt-namespaces", mapHookNS)
	startBouncer(t, hook, "--exempt-namespaces", mapSyncNS, "--mutation-annotations")
	if _, err := kube(t).AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, syncer+"-mutating", getOpts); !apierrors.IsNotFound(err) {
		t.Errorf("--mutation=false: MutatingWebhookConfiguration %s-mutating: %v, want none", syncer, err)
	}
	mustKubectl(t, mutators+"---\n"+mapSyncImage, "apply", "-f", "-")

	t.Run("policies appear", func(t *testing.T) {
		for _, id := range ids {
			name := mapgen.Name(id)
			eventually(t, 60*time.Second, func() error {
				if _, err := kube(t).AdmissionregistrationV1().MutatingAdmissionPolicies().Get(ctx, name, getOpts); err != nil {
					return err
				}
				b, err := kube(t).AdmissionregistrationV1().MutatingAdmissionPolicyBindings().Get(ctx, name, getOpts)
				if err != nil {
					return err
				}
				if b.Labels[mapgen.ManagedByLabel] != mapgen.ManagedByValue {
					return fmt.Errorf("binding %s labels %v", name, b.Labels)
				}
				sel := b.Spec.MatchResources
				if sel == nil || sel.NamespaceSelector == nil || !strings.Contains(fmt.Sprint(sel.NamespaceSelector.MatchExpressions), mapHookNS) {
					return fmt.Errorf("binding %s: namespaceSelector %+v does not exempt %s", name, sel, mapHookNS)
				}
				return nil
			})
		}
		waitMutator(t, ids[0].Kind, ids[0].Name, syncer, func(e map[string]any) error {
			if err := enforced(e); err != nil {
				return err
			}
			if fmt.Sprint(e["operations"]) != "[mutating-admission-policy]" {
				return fmt.Errorf("operations %v, want [mutating-admission-policy]", e["operations"])
			}
			return nil
		})
		out := mustKubectl(t, "", "get", "mutatingadmissionpolicies", "-l", "app.kubernetes.io/managed-by=bouncer")
		t.Logf("kubectl get mutatingadmissionpolicies -l app.kubernetes.io/managed-by=bouncer:\n%s", out)
	})

	t.Run("orphan pruned by the leader", func(t *testing.T) {
		eventually(t, 60*time.Second, func() error {
			_, perr := kube(t).AdmissionregistrationV1().MutatingAdmissionPolicies().Get(ctx, g.Policy.Name, getOpts)
			_, berr := kube(t).AdmissionregistrationV1().MutatingAdmissionPolicyBindings().Get(ctx, g.Binding.Name, getOpts)
			if !apierrors.IsNotFound(perr) || !apierrors.IsNotFound(berr) {
				return fmt.Errorf("orphan %s: policy %v, binding %v", g.Policy.Name, perr, berr)
			}
			return nil
		})
	})

	t.Run("inexpressible mutator reported in status", func(t *testing.T) {
		waitMutator(t, "AssignImage", "mapsync-mirror", syncer, func(e map[string]any) error {
			// With --mutation=false nothing applies it.
			if e["enforced"] == true || fmt.Sprint(e["operations"]) != "[mutating-admission-policy]" {
				return fmt.Errorf("want not enforced, operations [mutating-admission-policy]: %v", e)
			}
			errs, _ := e["errors"].([]any)
			for _, x := range errs {
				if m, _ := x.(map[string]any); m["type"] == "map_unsupported" && strings.Contains(fmt.Sprint(m["message"]), "AssignImage") {
					t.Logf("status.byPod error: %v", m["message"])
					return nil
				}
			}
			return fmt.Errorf("no map_unsupported error: %v", e)
		})
		name := mapgen.Name(mutation.ID{Kind: "AssignImage", Name: "mapsync-mirror"})
		if _, err := kube(t).AdmissionregistrationV1().MutatingAdmissionPolicies().Get(ctx, name, getOpts); !apierrors.IsNotFound(err) {
			t.Errorf("MutatingAdmissionPolicy %s: %v, want none", name, err)
		}
	})

	t.Run("conflicting mutators have no policy", func(t *testing.T) {
		list := mapgen.Name(mutation.ID{Kind: "Assign", Name: "mapsync-env-list"})
		object := mapgen.Name(mutation.ID{Kind: "Assign", Name: "mapsync-env-object"})
		exists := func(name string, want bool) func() error {
			return func() error {
				_, err := kube(t).AdmissionregistrationV1().MutatingAdmissionPolicies().Get(ctx, name, getOpts)
				switch {
				case want && err != nil:
					return fmt.Errorf("policy %s: %v", name, err)
				case !want && !apierrors.IsNotFound(err):
					return fmt.Errorf("policy %s still there (%v)", name, err)
				}
				return nil
			}
		}
		mustKubectl(t, mapSyncEnvList, "apply", "-f", "-")
		eventually(t, 60*time.Second, exists(list, true))
		mustKubectl(t, mapSyncEnvObject, "apply", "-f", "-")
		waitMutator(t, "Assign", "mapsync-env-object", syncer, schemaConflict)
		eventually(t, 60*time.Second, exists(list, false))
		eventually(t, 60*time.Second, exists(object, false))
		// The conflict ends with the second mutator: the first is written
		// again.
		mustKubectl(t, "", "delete", "assign.mutations.gatekeeper.sh", "mapsync-env-object")
		eventually(t, 60*time.Second, exists(list, true))
	})

	// Each namespace is mutated by one side only: wait until a dry run in
	// each comes back with every mutator's change.
	for _, ns := range []string{mapSyncNS, mapHookNS} {
		eventually(t, 90*time.Second, func() error {
			got, err := kubectl(t, fmt.Sprintf(mapSyncPod, "probe", ns), "create", "--dry-run=server", "-o", "json", "-f", "-")
			if err != nil {
				return fmt.Errorf("%v: %s", err, got)
			}
			for _, want := range []string{`"RuntimeDefault"`, `"runAsNonRoot": true`, `"ALL"`, `"imagePullPolicy": "Always"`, `"bouncer.dev/namespace": "` + ns + `"`} {
				if !strings.Contains(got, want) {
					return fmt.Errorf("%s: mutation not all in force yet: no %s in\n%s", ns, want, got)
				}
			}
			return nil
		})
	}

	t.Run("stored pods equal", func(t *testing.T) {
		stored := map[string]map[string]any{}
		for _, ns := range []string{mapSyncNS, mapHookNS} {
			out, err := kubectl(t, fmt.Sprintf(mapSyncPod, "web", ns), "create", "-o", "json", "-f", "-")
			if err != nil {
				t.Fatalf("creating web in %s: %v\n%s", ns, err, out)
			}
			var s map[string]any
			if err := json.Unmarshal([]byte(out), &s); err != nil {
				t.Fatal(err)
			}
			labels, _, _ := unstructured.NestedStringMap(s, "metadata", "labels")
			if labels["bouncer.dev/namespace"] != ns {
				t.Errorf("%s: label bouncer.dev/namespace %q", ns, labels["bouncer.dev/namespace"])
			}
			// The one field that differs by design: the namespace's name.
			unstructured.RemoveNestedField(s, "metadata", "labels", "bouncer.dev/namespace")
			stored[ns] = s
		}
		viaMAP, viaHook := stored[mapSyncNS], stored[mapHookNS]
		// The webhook writes bouncer.dev/mutations: the Pod in mapsync-map
		// must have been mutated by the apiserver alone.
		if a, _, _ := unstructured.NestedString(viaHook, "metadata", "annotations", "bouncer.dev/mutations"); a == "" {
			t.Errorf("the Pod in %s has no bouncer.dev/mutations annotation: %v", mapHookNS, viaHook["metadata"])
		}
		if a, found, _ := unstructured.NestedString(viaMAP, "metadata", "annotations", "bouncer.dev/mutations"); found {
			t.Errorf("the Pod in %s went through the mutating webhook: bouncer.dev/mutations %q", mapSyncNS, a)
		}
		fields := touchedFields(viaHook)
		if len(fields) != 8 {
			t.Fatalf("%d fields to compare, want 8 (labels, pod securityContext, 3 containers × 2)", len(fields))
		}
		for _, f := range fields {
			mv, hv := fieldAt(viaMAP, f), fieldAt(viaHook, f)
			if hv == nil {
				t.Errorf("%s: not written by the webhook", strings.Join(f, "."))
			}
			if !reflect.DeepEqual(normalJSON(t, mv), normalJSON(t, hv)) {
				t.Errorf("%s: stored via MAP %v, via webhook %v", strings.Join(f, "."), mv, hv)
			}
		}
		summary, _ := yaml.Marshal(map[string]any{"securityContext": fieldAt(viaMAP, []string{"spec", "securityContext"}), "containers[0].securityContext": fieldAt(viaMAP, []string{"spec", "containers", "0", "securityContext"})})
		t.Logf("stored via MAP in %s (equal to the webhook's in %s):\n%s", mapSyncNS, mapHookNS, summary)
	})

	t.Run("policy goes with its mutator", func(t *testing.T) {
		var gone mutation.ID
		for _, id := range ids {
			if id.Kind == "Assign" && strings.Contains(id.Name, "pull-policy") {
				gone = id
			}
		}
		if gone.Name == "" {
			t.Fatalf("no imagePullPolicy Assign among %v", ids)
		}
		mustKubectl(t, "", "delete", strings.ToLower(gone.Kind)+".mutations.gatekeeper.sh", gone.Name)
		name := mapgen.Name(gone)
		eventually(t, 60*time.Second, func() error {
			_, perr := kube(t).AdmissionregistrationV1().MutatingAdmissionPolicies().Get(ctx, name, getOpts)
			_, berr := kube(t).AdmissionregistrationV1().MutatingAdmissionPolicyBindings().Get(ctx, name, getOpts)
			if !apierrors.IsNotFound(perr) || !apierrors.IsNotFound(berr) {
				return fmt.Errorf("policy %s: %v; binding: %v", name, perr, berr)
			}
			return nil
		})
		// The others stay.
		for _, id := range ids {
			if id == gone {
				continue
			}
			if _, err := kube(t).AdmissionregistrationV1().MutatingAdmissionPolicies().Get(ctx, mapgen.Name(id), getOpts); err != nil {
				t.Errorf("policy of %s: %v", id, err)
			}
		}
	})
}
