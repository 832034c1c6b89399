package podgen

import (
	"fmt"
	"math/rand/v2"
)

var (
	engineApps  = []string{"checkout", "cart", "catalog", "search", "payments", "users", "orders", "shipping", "reviews", "gateway"}
	engineTeams = []string{"payments", "storefront", "platform", "growth", "data"}
	engineRepos = []string{"registry.example.com/shop/", "registry.example.com/platform/", "registry.example.com/data/"}
)

type engineContainer struct {
	name, image          string
	cpu, memory          string
	privileged           bool
	addCaps, dropCaps    []string
	withLimits           bool
	withSecurityContext  bool
	withResourceRequests bool
}

type enginePod struct {
	name, namespace string
	labels          [][2]string
	hostPID         bool
	containers      []engineContainer
}

// generateEngine emits Pods only. Most comply with
// pkg/engine/testdata/bench's policies; a violating one breaks exactly one:
// a :latest tag, an unapproved registry, a privileged container, missing
// labels, a missing limit, an added capability or hostPID.
func generateEngine(o Options, fn func(obj map[string]any) error) error {
	r := newRand(o, 42)
	violating := float64(o.ViolatingPercent) / 100
	for i := 0; i < o.Pods; i++ {
		p := newEnginePod(r, i, o.Namespaces)
		if r.Float64() < violating {
			p.breakOne(r)
		}
		if err := fn(p.object()); err != nil {
			return err
		}
	}
	return nil
}

// newEnginePod draws from r in a fixed order: the same seed gives the same
// Pods in every version of this file.
func newEnginePod(r *rand.Rand, i, namespaces int) *enginePod {
	app := engineApps[r.IntN(len(engineApps))]
	p := &enginePod{
		name:      fmt.Sprintf("%s-%08x-%05d", app, r.Uint32(), i),
		namespace: fmt.Sprintf("team-%03d", r.IntN(namespaces)),
		labels: [][2]string{
			{"app", app},
			{"team", engineTeams[r.IntN(len(engineTeams))]},
			{"owner", fmt.Sprintf("user%d", r.IntN(50))},
			{"app.kubernetes.io/name", app},
			{"cost-center", fmt.Sprintf("cc-%d", 1000+r.IntN(100))},
		},
	}
	p.containers = append(p.containers, engineContainer{
		name:  app,
		image: fmt.Sprintf("%s%s:1.%d.%d", engineRepos[r.IntN(len(engineRepos))], app, r.IntN(50), r.IntN(10)),
		cpu:   []string{"250m", "500m", "1"}[r.IntN(3)], memory: []string{"256Mi", "512Mi", "1Gi"}[r.IntN(3)],
		dropCaps: []string{"ALL"}, addCaps: []string{"NET_BIND_SERVICE"},
		withLimits: true, withSecurityContext: true, withResourceRequests: true,
	})
	if r.IntN(2) == 0 {
		p.containers = append(p.containers, engineContainer{
			name: "envoy", image: "registry.example.com/mesh/envoy:1.31.2", cpu: "500m", memory: "256Mi",
			dropCaps: []string{"ALL"}, withLimits: true, withSecurityContext: true,
		})
	}
	return p
}

// breakOne makes the Pod violate one policy.
func (p *enginePod) breakOne(r *rand.Rand) {
	c := &p.containers[0]
	switch r.IntN(7) {
	case 0:
		c.image = "registry.example.com/shop/" + c.name + ":latest"
	case 1:
		c.image = "docker.io/someone/" + c.name + ":1.0"
	case 2:
		c.privileged = true
	case 3:
		p.labels = p.labels[:2] // drop owner, app.kubernetes.io/name, cost-center
	case 4:
		c.withLimits = false
	case 5:
		c.addCaps = append(c.addCaps, "SYS_ADMIN")
	case 6:
		p.hostPID = true
	}
}

func (p *enginePod) object() map[string]any {
	labels := map[string]any{}
	for _, l := range p.labels {
		labels[l[0]] = l[1]
	}
	spec := map[string]any{"serviceAccountName": p.labels[0][1]}
	if p.hostPID {
		spec["hostPID"] = true
	}
	var containers []any
	for _, c := range p.containers {
		var resources map[string]any
		if c.withResourceRequests {
			resources = map[string]any{"requests": map[string]any{"cpu": "100m", "memory": "128Mi"}}
		}
		if c.withLimits {
			if resources == nil {
				resources = map[string]any{}
			}
			resources["limits"] = map[string]any{"cpu": c.cpu, "memory": c.memory}
		}
		ctr := map[string]any{
			"name":      c.name,
			"image":     c.image,
			"ports":     []any{map[string]any{"containerPort": int64(8080)}},
			"env":       []any{map[string]any{"name": "LOG_LEVEL", "value": "info"}},
			"resources": resources,
		}
		if c.withSecurityContext {
			caps := map[string]any{"drop": anyList(c.dropCaps)}
			if len(c.addCaps) > 0 {
				caps["add"] = anyList(c.addCaps)
			}
			ctr["securityContext"] = map[string]any{
				"privileged":               c.privileged,
				"allowPrivilegeEscalation": false,
				"capabilities":             caps,
			}
		}
		containers = append(containers, ctr)
	}
	spec["containers"] = containers
	return map[string]any{
		"apiVersion": "v1",
		"kind":       "Pod",
		"metadata":   map[string]any{"name": p.name, "namespace": p.namespace, "labels": labels},
		"spec":       spec,
	}
}

func anyList(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}
