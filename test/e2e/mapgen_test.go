package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

const mapgenPod = `apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: mapgenns
  labels: %s
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

// TestGeneratedMAPMutatesAsBouncer generates MutatingAdmissionPolicies
// from the library's mutators with bouncer map generate, applies them
// (bound to this test's namespace only, as the control plane is shared),
// creates Pods and compares what the apiserver stored with what bouncer
// mutate makes of the same Pods offline.
func TestGeneratedMAPMutatesAsBouncer(t *testing.T) {
	const ns = "mapgenns"
	createNamespace(t, ns)
	ctx := context.Background()
	mutators := filepath.Join(repoRoot, "library", "mutators")
	out, err := exec.Command(bouncerBin, "map", "generate", mutators).Output()
	if err != nil {
		t.Fatalf("bouncer map generate: %v\n%s", err, stderrOf(err))
	}
	var docs []string
	var names []string
	for _, d := range strings.Split(string(out), "\n---\n") {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(d), &u.Object); err != nil {
			t.Fatal(err)
		}
		if u.GetKind() == "MutatingAdmissionPolicyBinding" {
			names = append(names, u.GetName())
			sel := map[string]any{"matchLabels": map[string]any{"kubernetes.io/metadata.name": ns}}
			if err := unstructured.SetNestedField(u.Object, sel, "spec", "matchResources", "namespaceSelector"); err != nil {
				t.Fatal(err)
			}
		}
		b, err := yaml.Marshal(u.Object)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, string(b))
	}
	if len(names) < 6 {
		t.Fatalf("%d bindings generated from the library's mutators:\n%s", len(names), out)
	}
	t.Cleanup(func() {
		for _, n := range names {
			_ = kube(t).AdmissionregistrationV1().MutatingAdmissionPolicyBindings().Delete(ctx, n, metav1.DeleteOptions{})
			_ = kube(t).AdmissionregistrationV1().MutatingAdmissionPolicies().Delete(ctx, n, metav1.DeleteOptions{})
		}
	})
	mustKubectl(t, strings.Join(docs, "---\n"), "apply", "-f", "-")

	pods := map[string]string{
		"bare":     fmt.Sprintf(mapgenPod, "bare", "{app: web}"),
		"labelled": fmt.Sprintf(mapgenPod, "labelled", `{app: web, "bouncer.dev/namespace": keep}`),
	}
	// The apiserver compiles new policies asynchronously: wait until a
	// dry-run create comes back with every policy's change.
	eventually(t, 60*time.Second, func() error {
		got, err := kubectl(t, pods["bare"], "create", "--dry-run=server", "-o", "json", "-f", "-")
		if err != nil {
			return fmt.Errorf("%v: %s", err, got)
		}
		for _, want := range []string{`"RuntimeDefault"`, `"runAsNonRoot": true`, `"allowPrivilegeEscalation": false`, `"ALL"`, `"imagePullPolicy": "Always"`, `"bouncer.dev/namespace": "mapgenns"`} {
			if !strings.Contains(got, want) {
				return fmt.Errorf("policies not all in force yet: no %s in\n%s", want, got)
			}
		}
		return nil
	})
	dir := t.TempDir()
	for name, src := range pods {
		stored, err := kubectl(t, src, "create", "-o", "json", "-f", "-")
		if err != nil {
			t.Fatalf("creating %s: %v\n%s", name, err, stored)
		}
		file := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		offline, err := exec.Command(bouncerBin, "mutate", "--policy", mutators, file).Output()
		if err != nil {
			t.Fatalf("bouncer mutate: %v\n%s", err, stderrOf(err))
		}
		var s, o map[string]any
		if err := json.Unmarshal([]byte(stored), &s); err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(offline, &o); err != nil {
			t.Fatal(err)
		}
		for _, f := range touchedFields(o) {
			sv, ov := fieldAt(s, f), fieldAt(o, f)
			if !reflect.DeepEqual(normalJSON(t, sv), normalJSON(t, ov)) {
				t.Errorf("%s: %s: stored %v, bouncer mutate %v", name, strings.Join(f, "."), sv, ov)
			}
		}
		if name == "bare" {
			summary, _ := yaml.Marshal(map[string]any{"labels": fieldAt(s, []string{"metadata", "labels"}), "securityContext": fieldAt(s, []string{"spec", "securityContext"}), "containers": fieldAt(s, []string{"spec", "containers"})})
			t.Logf("stored Pod %s/%s:\n%s", ns, name, summary)
		}
		if l := o["metadata"].(map[string]any)["labels"].(map[string]any)["bouncer.dev/namespace"]; name == "labelled" && l != "keep" || name == "bare" && l != ns {
			t.Errorf("%s: label bouncer.dev/namespace %v", name, l)
		}
	}
}

// touchedFields are the fields the library's mutators write: the labels,
// the Pod's securityContext, and each container's securityContext and
// imagePullPolicy, addressed by index.
func touchedFields(pod map[string]any) [][]string {
	out := [][]string{{"metadata", "labels"}, {"spec", "securityContext"}}
	for _, list := range []string{"containers", "initContainers"} {
		cs, _, _ := unstructured.NestedSlice(pod, "spec", list)
		for i := range cs {
			out = append(out, []string{"spec", list, fmt.Sprint(i), "securityContext"}, []string{"spec", list, fmt.Sprint(i), "imagePullPolicy"})
		}
	}
	return out
}

// fieldAt follows a path of map keys and list indexes.
func fieldAt(v any, path []string) any {
	for _, p := range path {
		switch x := v.(type) {
		case map[string]any:
			v = x[p]
		case []any:
			var i int
			if _, err := fmt.Sscan(p, &i); err != nil || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

func normalJSON(t *testing.T, v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
