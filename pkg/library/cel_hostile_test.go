package library_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/engine"
)

// The apiserver bounds what one CEL expression may cost (PerCallLimit) and
// what one policy evaluation may cost altogether (RuntimeCELCostBudget).
// Bouncer's driver charges those costs itself (pkg/engine/cel computes
// shared variables once and charges them again, converts the review its own
// way): objects built to exhaust the limits are where such a copy drifts.
// For each of them every library template must report what the apiserver's
// validator reports, errors included, word for word.

// Error texts of the apiserver's validator, as it reports them.
const (
	costLimitError = "operation cancelled: actual cost limit exceeded"
	budgetError    = "validation failed due to running out of cost budget"
)

// hostileObject is an object and how it is reviewed.
type hostileObject struct {
	name string
	obj  map[string]any
	op   string
}

func hostilePod(name string, spec map[string]any, meta map[string]any) map[string]any {
	md := map[string]any{"name": name, "namespace": "default"}
	for k, v := range meta {
		md[k] = v
	}
	return map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": spec}
}

// fullContainer is a container every library template reads something of.
func fullContainer(i int) map[string]any {
	return map[string]any{
		"name":            fmt.Sprintf("c%d", i),
		"image":           fmt.Sprintf("registry.example.com/app/c%d:1.0", i),
		"imagePullPolicy": "Always",
		"ports":           []any{map[string]any{"containerPort": int64(8080), "hostPort": int64(8080)}},
		"resources": map[string]any{
			"limits":   map[string]any{"cpu": "1", "memory": "1Gi"},
			"requests": map[string]any{"cpu": "500m", "memory": "512Mi"},
		},
		"securityContext": map[string]any{
			"privileged":               false,
			"allowPrivilegeEscalation": false,
			"readOnlyRootFilesystem":   true,
			"runAsNonRoot":             true,
			"capabilities":             map[string]any{"drop": []any{"ALL"}, "add": []any{"NET_BIND_SERVICE"}},
		},
		"readinessProbe": map[string]any{"httpGet": map[string]any{"path": "/", "port": int64(8080)}},
		"livenessProbe":  map[string]any{"httpGet": map[string]any{"path": "/", "port": int64(8080)}},
	}
}

// costLimitObjects are objects with one dimension large enough that a
// single expression of some template costs more than PerCallLimit.
func costLimitObjects() []hostileObject {
	long := strings.Repeat("a", 1<<20)
	many := func(n int, mk func(int) any) []any {
		out := make([]any, n)
		for i := range out {
			out[i] = mk(i)
		}
		return out
	}
	labels := func(n int) map[string]any {
		m := map[string]any{"owner": "team-a", "app.kubernetes.io/name": "app"}
		for i := range n {
			m[fmt.Sprintf("example.com/l%d", i)] = fmt.Sprintf("v%d", i)
		}
		return m
	}
	pod := func(name string, c map[string]any, spec map[string]any) hostileObject {
		sp := map[string]any{"containers": []any{c}}
		for k, v := range spec {
			sp[k] = v
		}
		return hostileObject{name: name, obj: hostilePod(name, sp, nil)}
	}
	c := fullContainer(0)
	longImage := fullContainer(0)
	longImage["image"] = "registry.example.com/" + long + ":1.0"
	manyPorts := fullContainer(0)
	manyPorts["ports"] = many(2000, func(i int) any {
		return map[string]any{"containerPort": int64(i%60000 + 1), "hostPort": int64(i%60000 + 1)}
	})
	manyEnv := fullContainer(0)
	manyEnv["env"] = many(2000, func(i int) any { return map[string]any{"name": fmt.Sprintf("E%d", i), "value": "x"} })
	manyCaps := fullContainer(0)
	manyCaps["securityContext"].(map[string]any)["capabilities"] = map[string]any{
		"add":  many(2000, func(i int) any { return fmt.Sprintf("CAP_%d", i) }),
		"drop": many(2000, func(i int) any { return fmt.Sprintf("CAP_%d", i) }),
	}
	deployment := func(name string, meta map[string]any, podSpec map[string]any) hostileObject {
		md := map[string]any{"name": name, "namespace": "prod-a"}
		for k, v := range meta {
			md[k] = v
		}
		return hostileObject{name: name, obj: map[string]any{
			"apiVersion": "apps/v1", "kind": "Deployment", "metadata": md,
			"spec": map[string]any{
				"replicas": int64(3),
				"template": map[string]any{"metadata": map[string]any{"labels": labels(0)}, "spec": podSpec},
			},
		}}
	}
	service := func(name string, meta map[string]any, spec map[string]any) hostileObject {
		md := map[string]any{"name": name, "namespace": "default"}
		for k, v := range meta {
			md[k] = v
		}
		return hostileObject{name: name, obj: map[string]any{"apiVersion": "v1", "kind": "Service", "metadata": md, "spec": spec}}
	}
	ingress := func(name string, spec map[string]any) hostileObject {
		return hostileObject{name: name, obj: map[string]any{
			"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
			"metadata": map[string]any{"name": name, "namespace": "default"}, "spec": spec,
		}}
	}
	return []hostileObject{
		{name: "pod with 1000 bare containers", obj: hostilePod("bare-1000", map[string]any{"containers": containers(1000, bareContainer)}, nil)},
		{name: "pod with 1000 init and 1000 ephemeral containers", obj: hostilePod("init-1000", map[string]any{
			"containers":          []any{c},
			"initContainers":      containers(1000, bareContainer),
			"ephemeralContainers": containers(1000, bareContainer),
		}, nil)},
		pod("pod with a 1 MiB image", longImage, nil),
		pod("pod with 2000 ports", manyPorts, nil),
		pod("pod with 2000 env vars", manyEnv, nil),
		pod("pod with 2000 capabilities", manyCaps, nil),
		pod("pod with 2000 hostPath volumes", c, map[string]any{"volumes": many(2000, func(i int) any {
			return map[string]any{"name": fmt.Sprintf("v%d", i), "hostPath": map[string]any{"path": fmt.Sprintf("/var/v%d", i)}}
		})}),
		pod("pod with 2000 sysctls", c, map[string]any{"securityContext": map[string]any{"sysctls": many(2000, func(i int) any {
			return map[string]any{"name": fmt.Sprintf("net.ipv4.s%d", i), "value": "1"}
		})}}),
		{name: "pod with 2000 labels and annotations", obj: hostilePod("labels", map[string]any{"containers": []any{c}}, map[string]any{
			"labels": labels(2000), "annotations": labels(2000),
		})},
		{name: "pod with a 1 MiB annotation", obj: hostilePod("annotation", map[string]any{"containers": []any{c}}, map[string]any{
			"annotations": map[string]any{"container.apparmor.security.beta.kubernetes.io/c0": long, "seccomp.security.alpha.kubernetes.io/pod": long},
		})},
		{name: "pod updated, nested 2000 deep", op: "UPDATE", obj: hostilePod("nested", map[string]any{
			"containers": []any{c}, "serviceAccountName": "default", "overhead": nested(2000),
		}, nil)},
		deployment("deployment with 2000 labels", map[string]any{"labels": labels(2000)}, map[string]any{"containers": containers(1000, bareContainer)}),
		{name: "namespace with 2000 labels", obj: map[string]any{
			"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "ns", "labels": labels(2000)},
		}},
		service("service with 2000 ports and external IPs", map[string]any{"annotations": labels(2000)}, map[string]any{
			"type":        "NodePort",
			"ports":       many(2000, func(i int) any { return map[string]any{"port": int64(i%60000 + 1), "nodePort": int64(30000 + i%2000)} }),
			"externalIPs": many(2000, func(i int) any { return fmt.Sprintf("10.%d.%d.%d", i/65536%256, i/256%256, i%256) }),
		}),
		service("service with 1 MiB annotations", map[string]any{"annotations": map[string]any{"example.com/contact": long + "@example.com", "example.com/runbook": "https://" + long}}, map[string]any{
			"type": "LoadBalancer", "ports": []any{map[string]any{"port": int64(80)}},
		}),
		ingress("ingress with 2000 rules", map[string]any{
			"rules": many(2000, func(i int) any { return map[string]any{"host": fmt.Sprintf("*.h%d.example.com", i)} }),
			"tls":   many(2000, func(i int) any { return map[string]any{"hosts": []any{fmt.Sprintf("h%d.example.com", i)}} }),
		}),
		ingress("ingress with a 1 MiB host", map[string]any{"rules": []any{map[string]any{"host": "*." + long + ".example.com"}}}),
	}
}

// budgetObjects are Pods and workloads whose containers are each cheap to
// check but many enough that a template's expressions together cost more
// than RuntimeCELCostBudget, at sizes around where that starts.
func budgetObjects() []hostileObject {
	var out []hostileObject
	for _, n := range []int{300, 600, 900, 1200} {
		out = append(out, hostileObject{
			name: fmt.Sprintf("pod with %d bare containers", n),
			obj:  hostilePod(fmt.Sprintf("bare-%d", n), map[string]any{"containers": containers(n, bareContainer)}, nil),
		})
	}
	for _, n := range []int{200, 400} {
		out = append(out, hostileObject{
			name: fmt.Sprintf("pod with %d full containers", n),
			obj: hostilePod(fmt.Sprintf("full-%d", n), map[string]any{
				"containers":     containers(n, fullContainer),
				"initContainers": containers(n/2, fullContainer),
			}, nil),
		})
	}
	for _, n := range []int{300, 900} {
		out = append(out, hostileObject{
			name: fmt.Sprintf("deployment with %d full containers", n),
			obj: map[string]any{
				"apiVersion": "apps/v1", "kind": "Deployment",
				"metadata": map[string]any{"name": "d", "namespace": "prod-a", "labels": map[string]any{"owner": "a", "app.kubernetes.io/name": "b"}},
				"spec":     map[string]any{"replicas": int64(3), "template": map[string]any{"spec": map[string]any{"containers": containers(n, fullContainer)}}},
			},
		})
	}
	return out
}

func containers(n int, mk func(int) map[string]any) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = mk(i)
	}
	return out
}

func bareContainer(i int) map[string]any {
	return map[string]any{"name": fmt.Sprintf("c%d", i), "image": "nginx"}
}

// nested is a map nested depth deep.
func nested(depth int) map[string]any {
	m := map[string]any{"leaf": "x"}
	for range depth {
		m = map[string]any{"a": m, "b": "y"}
	}
	return m
}

// libraryCELDirs lists the library policies with CEL code and a sample
// constraint.
func libraryCELDirs(t *testing.T) []string {
	t.Helper()
	var dirs []string
	for _, p := range policies(t) {
		dir := filepath.Join(libraryDir, p.Name)
		if _, err := os.Stat(filepath.Join(dir, "constraint.yaml")); err == nil && hasCEL(t, p) {
			dirs = append(dirs, dir)
		}
	}
	return dirs
}

// compareHostile reviews each object under the template and constraint of
// each directory (template.yaml, constraint.yaml) by the engine (CEL only,
// no evaluation cache, a deadline no review here comes near) and by the
// apiserver's validator, and reports every difference. It returns how many
// outcomes carried each of the given error texts on the apiserver's side.
func compareHostile(t *testing.T, dirs []string, objs []hostileObject, errorTexts ...string) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			test := apis.SuiteTest{Template: "template.yaml", Constraint: "constraint.yaml"}
			// The apiserver's validator runs here without a deadline; a
			// review deadline the engine could reach would make the two
			// differ by the machine's speed.
			e := suiteEngineTimeout(t, dir, test, apis.EngineCEL, -1, time.Hour)
			vs := apiserverSet(t, filepath.Join(dir, test.Template), filepath.Join(dir, test.Constraint))
			for _, o := range objs {
				r := hostileReview(o)
				resp, err := e.Review(context.Background(), r)
				if err != nil {
					t.Fatalf("%s: engine: %v", o.name, err)
				}
				got := engineOutcome(resp)
				want := apiserverOutcome(vs.Evaluate(context.Background(), r, false))
				if !slices.Equal(got, want) {
					t.Errorf("%s: apiserver reports\n  %s\nengine reports\n  %s", o.name, shorten(strings.Join(want, "\n  ")), shorten(strings.Join(got, "\n  ")))
				}
				for _, w := range want {
					for _, text := range errorTexts {
						if strings.Contains(w, text) {
							seen[text]++
						}
					}
				}
			}
		})
	}
	return seen
}

func shorten(s string) string {
	if len(s) > 2000 {
		return s[:2000] + "..."
	}
	return s
}

func hostileReview(o hostileObject) *engine.Review {
	op := o.op
	if op == "" {
		op = "CREATE"
	}
	meta, _ := o.obj["metadata"].(map[string]any)
	ns, _ := meta["namespace"].(string)
	r := engine.ObjectReview(o.obj, op, map[string]any{
		"apiVersion": "v1",
		"kind":       "Namespace",
		"metadata": map[string]any{
			"name":   ns,
			"labels": map[string]any{"kubernetes.io/metadata.name": ns},
		},
	})
	if op != "CREATE" {
		r.OldObject = o.obj
	}
	return r
}

// validationPrefix is how the driver names the validation an error comes
// from; the apiserver's validator does not.
var validationPrefix = regexp.MustCompile(`^validations\[\d+\]: `)

// engineOutcome is a response's violations and errors, each error as the
// apiserver's validator would word it, sorted.
func engineOutcome(resp *engine.Response) []string {
	var out []string
	for _, r := range resp.Results {
		out = append(out, "deny: "+r.Message)
	}
	for _, ee := range resp.Errors {
		err := ee.Err
		errs := []error{err}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			errs = j.Unwrap()
		}
		for _, e := range errs {
			out = append(out, "deny: "+validationPrefix.ReplaceAllString(e.Error(), ""))
		}
	}
	slices.Sort(out)
	return out
}

// apiserverOutcome is the validator's decisions, sorted: pkg/vap reports an
// evaluation error under failurePolicy Fail as a denial with the error as
// its message, as the apiserver does.
func apiserverOutcome(resp *engine.Response) []string {
	var out []string
	if resp == nil {
		return nil
	}
	for _, r := range resp.Results {
		out = append(out, "deny: "+r.Message)
	}
	for _, err := range resp.Errors {
		out = append(out, "error: "+err.Error())
	}
	slices.Sort(out)
	return out
}

// TestCELCostLimitsMatchApiserverOnHostileObjects reviews objects with one
// dimension (containers, ports, volumes, labels, a string) large enough
// that single expressions cost more than the per-expression limit.
func TestCELCostLimitsMatchApiserverOnHostileObjects(t *testing.T) {
	seen := compareHostile(t, libraryCELDirs(t), costLimitObjects(), costLimitError)
	if seen[costLimitError] == 0 {
		t.Fatalf("no object exceeded the per-expression cost limit: the comparison proves nothing")
	}

	// A Pod with 30,000 containers once took the driver past the review
	// deadline. Both evaluators spend seconds per template on it, in
	// cel-go's runtime cost tracker (interpreter.refValStack.drop searches
	// a stack that grows by an entry per iteration for terms that were
	// short-circuited and never pushed: quadratic in the containers), so
	// it is reviewed under templates that iterate the containers cheaply
	// and one that runs out of cost there, the quickest of those.
	huge := []hostileObject{{name: "pod with 30000 bare containers", obj: hostilePod("bare-30000", map[string]any{"containers": containers(30000, bareContainer)}, nil)}}
	var dirs []string
	for _, name := range []string{"pss-baseline-selinux", "pss-baseline-proc-mount", "pss-baseline-seccomp", "pss-baseline-privileged", "disallowed-repos"} {
		dirs = append(dirs, filepath.Join(libraryDir, name))
	}
	seen = compareHostile(t, dirs, huge, costLimitError, budgetError)
	if seen[costLimitError]+seen[budgetError] == 0 {
		t.Fatalf("30000 containers exceeded no cost limit: the comparison proves nothing")
	}
}

// TestCELBudgetMatchesApiserverOnHostileObjects reviews objects sized
// around where a template's expressions together run out of the
// evaluation's cost budget, which the driver charges itself (variables
// computed once are charged again in each phase, shared results are
// charged as if computed), and a template whose passing validation's
// message expression alone can exhaust it.
func TestCELBudgetMatchesApiserverOnHostileObjects(t *testing.T) {
	seen := compareHostile(t, libraryCELDirs(t), budgetObjects(), budgetError)
	if seen[budgetError] == 0 {
		t.Fatalf("no object ran out of cost budget: the comparison proves nothing")
	}
	var blobs []hostileObject
	for _, n := range []int{1 << 10, 1 << 20, 4 << 20} {
		name := fmt.Sprintf("pod with a %d KiB annotation", n>>10)
		blobs = append(blobs, hostileObject{name: name, obj: hostilePod("blob", map[string]any{"containers": []any{bareContainer(0)}},
			map[string]any{"annotations": map[string]any{"example.com/blob": strings.Repeat("ab", n/2)}})})
	}
	seen = compareHostile(t, []string{"testdata/hostile-messages"}, blobs, budgetError)
	if seen[budgetError] == 0 {
		t.Fatalf("the message expression never ran out of cost budget: the comparison proves nothing")
	}
}
