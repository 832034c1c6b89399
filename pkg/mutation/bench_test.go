package mutation

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// BenchmarkMutatePod puts one Pod with three containers through the six
// defaults platform teams set. Each iteration mutates a fresh copy of the
// Pod (the copy is part of the measured work: admission mutates a freshly
// decoded object every time).
func BenchmarkMutatePod(b *testing.B) {
	s := NewSystem()
	for _, m := range []string{
		assign("drop-all", "spec.containers[name: *].securityContext.capabilities.drop", "    assign: {value: [ALL]}\n"),
		assign("seccomp", "spec.securityContext.seccompProfile.type", "    assign: {value: RuntimeDefault}\n"),
		assign("no-escalation", "spec.containers[name: *].securityContext.allowPrivilegeEscalation", "    assign: {value: false}\n"),
		assign("non-root", "spec.securityContext.runAsNonRoot", "    assign: {value: true}\n"),
		assign("pull-always", "spec.containers[name: *].imagePullPolicy", "    assign: {value: Always}\n"),
		assignMetadata("team", "metadata.labels.team", "    assign: {fromMetadata: {field: namespace}}\n"),
	} {
		if err := s.Add(mustMutator(b, m)); err != nil {
			b.Fatal(err)
		}
	}
	base := decodeYAML(b, `
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec:
  containers:
  - {name: app, image: "nginx:1.27", ports: [{containerPort: 80}]}
  - {name: sidecar, image: "envoyproxy/envoy:v1.31", args: ["--config", "/etc/envoy.yaml"]}
  - {name: logs, image: "fluent/fluent-bit:3", securityContext: {readOnlyRootFilesystem: true}}
`)
	ns := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "shop"}}}
	// Check once that the benchmark measures real work.
	u := &unstructured.Unstructured{Object: deepCopy(base).(map[string]any)}
	if _, applied, err := s.Mutate(u, ns, "CREATE"); err != nil || len(applied) != 6 {
		b.Fatalf("applied %v, err %v; want all six mutators", applied, err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		u := &unstructured.Unstructured{Object: deepCopy(base).(map[string]any)}
		if _, _, err := s.Mutate(u, ns, "CREATE"); err != nil {
			b.Fatal(err)
		}
	}
}
