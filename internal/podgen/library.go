package podgen

import "fmt"

// NamespaceName is the name of the Library mix's namespace i.
func NamespaceName(i int) string {
	if i%2 == 0 {
		return fmt.Sprintf("prod-%03d", i)
	}
	return fmt.Sprintf("team-%03d", i)
}

// Namespace returns the Library mix's namespace i as an object.
func Namespace(i int) map[string]any {
	return map[string]any{
		"apiVersion": "v1",
		"kind":       "Namespace",
		"metadata": map[string]any{
			"name":   NamespaceName(i),
			"labels": map[string]any{"owner": fmt.Sprintf("team-%d", i%7), "kubernetes.io/metadata.name": NamespaceName(i), "app.kubernetes.io/name": "shop"},
		},
	}
}

const digest = "sha256:4c4d9e4f6b5a2f1f3c8a9e7d6b5c4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b"

func libraryContainer(name, image string) map[string]any {
	return map[string]any{
		"name":  name,
		"image": image,
		"ports": []any{map[string]any{"containerPort": int64(8080), "name": "http"}},
		"resources": map[string]any{
			"requests": map[string]any{"cpu": "100m", "memory": "128Mi"},
			"limits":   map[string]any{"cpu": "200m", "memory": "256Mi"},
		},
		"securityContext": map[string]any{
			"allowPrivilegeEscalation": false,
			"readOnlyRootFilesystem":   true,
			"runAsNonRoot":             true,
			"capabilities":             map[string]any{"drop": []any{"ALL"}},
			"seccompProfile":           map[string]any{"type": "RuntimeDefault"},
		},
		"readinessProbe": map[string]any{"httpGet": map[string]any{"path": "/ready", "port": "http"}},
		"livenessProbe":  map[string]any{"httpGet": map[string]any{"path": "/live", "port": "http"}},
	}
}

// CompliantPod is a Pod that passes every library constraint.
func CompliantPod(name, ns string) map[string]any {
	spec := map[string]any{
		"automountServiceAccountToken": false,
		"securityContext": map[string]any{
			"runAsNonRoot":   true,
			"runAsUser":      int64(10001),
			"seccompProfile": map[string]any{"type": "RuntimeDefault"},
		},
		"containers": []any{libraryContainer("app", "registry.example.com/shop/web:1.4.2@"+digest)},
	}
	return map[string]any{
		"apiVersion": "v1",
		"kind":       "Pod",
		"metadata": map[string]any{
			"name":      name,
			"namespace": ns,
			"labels":    map[string]any{"app": "web", "owner": "shop"},
		},
		"spec": spec,
	}
}

// libraryViolations each break one or more library policies.
var libraryViolations = []func(p map[string]any){
	func(p map[string]any) { ctr(p)["image"] = "registry.example.com/shop/web:latest" },
	func(p map[string]any) { ctr(p)["image"] = "docker.io/evil/miner:1.0" },
	func(p map[string]any) { sc(p)["privileged"] = true },
	func(p map[string]any) { spec(p)["hostPID"] = true },
	func(p map[string]any) { spec(p)["hostNetwork"] = true },
	func(p map[string]any) {
		spec(p)["volumes"] = []any{map[string]any{"name": "host", "hostPath": map[string]any{"path": "/var/run"}}}
	},
	func(p map[string]any) { delete(ctr(p), "resources") },
	func(p map[string]any) { delete(ctr(p), "livenessProbe"); delete(ctr(p), "readinessProbe") },
	func(p map[string]any) { sc(p)["capabilities"] = map[string]any{"add": []any{"NET_RAW", "SYS_ADMIN"}} },
	func(p map[string]any) { sc(p)["runAsUser"] = int64(0); sc(p)["runAsNonRoot"] = false },
	func(p map[string]any) { sc(p)["allowPrivilegeEscalation"] = true },
	func(p map[string]any) { sc(p)["readOnlyRootFilesystem"] = false },
	func(p map[string]any) { spec(p)["automountServiceAccountToken"] = true },
	func(p map[string]any) {
		ctr(p)["ports"] = []any{map[string]any{"containerPort": int64(8080), "hostPort": int64(80)}}
	},
	func(p map[string]any) { ctr(p)["image"] = "registry.example.com/shop/web:1.4.2" }, // no digest (prod-* only)
	func(p map[string]any) {
		ctr(p)["resources"] = map[string]any{"requests": map[string]any{"cpu": "3", "memory": "128Mi"}, "limits": map[string]any{"cpu": "16", "memory": "16Gi"}}
	},
	func(p map[string]any) { sc(p)["seccompProfile"] = map[string]any{"type": "Unconfined"} },
	func(p map[string]any) {
		spec(p)["securityContext"].(map[string]any)["sysctls"] = []any{map[string]any{"name": "kernel.msgmax", "value": "65536"}}
	},
}

func spec(p map[string]any) map[string]any { return p["spec"].(map[string]any) }
func ctr(p map[string]any) map[string]any {
	return spec(p)["containers"].([]any)[0].(map[string]any)
}
func sc(p map[string]any) map[string]any { return ctr(p)["securityContext"].(map[string]any) }

// ViolatingPod is the compliant Pod with library violation variants vs
// applied.
func ViolatingPod(name, ns string, vs ...int) map[string]any {
	p := CompliantPod(name, ns)
	for _, v := range vs {
		libraryViolations[v%len(libraryViolations)](p)
	}
	return p
}

// generateLibrary emits the namespaces first, then the Pods.
func generateLibrary(o Options, fn func(obj map[string]any) error) error {
	for i := 0; i < o.Namespaces; i++ {
		if err := fn(Namespace(i)); err != nil {
			return err
		}
	}
	rng := newRand(o, 0x6b6f756e636572)
	var templates []map[string]any
	stamped := o.Templates > 0 && o.Templates < o.Pods
	replicas := newRand(o, 0x7265706c696361)
	for i := 0; i < o.Pods; i++ {
		if stamped && i >= o.Templates {
			if err := fn(Replica(templates[i%o.Templates], replicas, i)); err != nil {
				return err
			}
			continue
		}
		ns := NamespaceName(rng.IntN(o.Namespaces))
		name := fmt.Sprintf("pod-%06d", i)
		var p map[string]any
		if rng.IntN(100) < o.ViolatingPercent {
			n := 1 + rng.IntN(3)
			vs := make([]int, n)
			for j := range vs {
				vs[j] = rng.IntN(len(libraryViolations))
			}
			p = ViolatingPod(name, ns, vs...)
		} else {
			p = CompliantPod(name, ns)
		}
		if rng.IntN(4) == 0 { // a sidecar in a quarter of the Pods
			s := spec(p)
			s["containers"] = append(s["containers"].([]any), libraryContainer("proxy", "registry.example.com/mesh/proxy:2.1.0@"+digest))
		}
		if stamped {
			templates = append(templates, p)
			p = Replica(p, replicas, i)
		}
		if err := fn(p); err != nil {
			return err
		}
	}
	return nil
}
