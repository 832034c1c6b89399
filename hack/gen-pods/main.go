// Command gen-pods writes N realistic Pods as multi-document YAML, spread
// over many namespaces, for load-testing bouncer test. Most Pods comply
// with the policies in pkg/engine/testdata/bench; about one in four breaks
// one of them (a :latest tag, an unapproved registry, a privileged
// container, a missing label, a missing limit, an added capability or
// hostPID). The output is deterministic for a given -n and -seed.
//
//	go run ./hack/gen-pods -n 10000 > /tmp/pods.yaml
package main

import (
	"bufio"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
)

func main() {
	n := flag.Int("n", 1000, "number of Pods")
	namespaces := flag.Int("namespaces", 200, "number of namespaces")
	seed := flag.Uint64("seed", 1, "random seed")
	violating := flag.Float64("violating", 0.25, "fraction of Pods that break a policy")
	flag.Parse()
	w := bufio.NewWriterSize(os.Stdout, 1<<16)
	defer w.Flush()
	r := rand.New(rand.NewPCG(*seed, 42))
	for i := 0; i < *n; i++ {
		if i > 0 {
			fmt.Fprintln(w, "---")
		}
		p := newPod(r, i, *namespaces)
		if r.Float64() < *violating {
			p.breakOne(r)
		}
		p.write(w)
	}
}

var (
	apps  = []string{"checkout", "cart", "catalog", "search", "payments", "users", "orders", "shipping", "reviews", "gateway"}
	teams = []string{"payments", "storefront", "platform", "growth", "data"}
	repos = []string{"registry.example.com/shop/", "registry.example.com/platform/", "registry.example.com/data/"}
)

type container struct {
	name, image          string
	cpu, memory          string
	privileged           bool
	addCaps, dropCaps    []string
	withLimits           bool
	withSecurityContext  bool
	withResourceRequests bool
}

type pod struct {
	name, namespace string
	labels          [][2]string
	hostPID         bool
	containers      []container
}

func newPod(r *rand.Rand, i, namespaces int) *pod {
	app := apps[r.IntN(len(apps))]
	p := &pod{
		name:      fmt.Sprintf("%s-%08x-%05d", app, r.Uint32(), i),
		namespace: fmt.Sprintf("team-%03d", r.IntN(namespaces)),
		labels: [][2]string{
			{"app", app},
			{"team", teams[r.IntN(len(teams))]},
			{"owner", fmt.Sprintf("user%d", r.IntN(50))},
			{"app.kubernetes.io/name", app},
			{"cost-center", fmt.Sprintf("cc-%d", 1000+r.IntN(100))},
		},
	}
	p.containers = append(p.containers, container{
		name:  app,
		image: fmt.Sprintf("%s%s:1.%d.%d", repos[r.IntN(len(repos))], app, r.IntN(50), r.IntN(10)),
		cpu:   []string{"250m", "500m", "1"}[r.IntN(3)], memory: []string{"256Mi", "512Mi", "1Gi"}[r.IntN(3)],
		dropCaps: []string{"ALL"}, addCaps: []string{"NET_BIND_SERVICE"},
		withLimits: true, withSecurityContext: true, withResourceRequests: true,
	})
	if r.IntN(2) == 0 {
		p.containers = append(p.containers, container{
			name: "envoy", image: "registry.example.com/mesh/envoy:1.31.2", cpu: "500m", memory: "256Mi",
			dropCaps: []string{"ALL"}, withLimits: true, withSecurityContext: true,
		})
	}
	return p
}

// breakOne makes the Pod violate one policy.
func (p *pod) breakOne(r *rand.Rand) {
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

func (p *pod) write(w *bufio.Writer) {
	fmt.Fprintf(w, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\n  namespace: %s\n  labels:\n", p.name, p.namespace)
	for _, l := range p.labels {
		fmt.Fprintf(w, "    %s: %q\n", l[0], l[1])
	}
	fmt.Fprintf(w, "spec:\n  serviceAccountName: %s\n", p.labels[0][1])
	if p.hostPID {
		fmt.Fprintf(w, "  hostPID: true\n")
	}
	fmt.Fprintf(w, "  containers:\n")
	for _, c := range p.containers {
		fmt.Fprintf(w, "    - name: %s\n      image: %s\n      ports:\n        - containerPort: 8080\n      env:\n        - name: LOG_LEVEL\n          value: info\n", c.name, c.image)
		fmt.Fprintf(w, "      resources:\n")
		if c.withResourceRequests {
			fmt.Fprintf(w, "        requests: {cpu: 100m, memory: 128Mi}\n")
		}
		if c.withLimits {
			fmt.Fprintf(w, "        limits: {cpu: %q, memory: %s}\n", c.cpu, c.memory)
		}
		if c.withSecurityContext {
			fmt.Fprintf(w, "      securityContext:\n        privileged: %v\n        allowPrivilegeEscalation: false\n        capabilities:\n          drop: %s\n", c.privileged, list(c.dropCaps))
			if len(c.addCaps) > 0 {
				fmt.Fprintf(w, "          add: %s\n", list(c.addCaps))
			}
		}
	}
}

func list(s []string) string {
	out := "["
	for i, v := range s {
		if i > 0 {
			out += ", "
		}
		out += fmt.Sprintf("%q", v)
	}
	return out + "]"
}
