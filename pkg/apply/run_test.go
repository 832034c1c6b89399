package apply

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// cm is a ConfigMap node, depending on the named ConfigMaps of namespace
// "ns".
func cm(name string, deps ...string) *node {
	obj := &unstructured.Unstructured{}
	obj.SetAPIVersion("v1")
	obj.SetKind("ConfigMap")
	obj.SetNamespace("ns")
	obj.SetName(name)
	if len(deps) > 0 {
		var refs []string
		for _, d := range deps {
			refs = append(refs, "/namespaces/ns/ConfigMap/"+d)
		}
		obj.SetAnnotations(map[string]string{DependsOnAnnotation: strings.Join(refs, ",")})
	}
	return &node{ref: RefOf(obj), obj: obj}
}

// timeline records when each node's work started and ended, and how many
// ran at once.
type timeline struct {
	mu             sync.Mutex
	running, peak  int
	started, ended map[string]int
	clock          int
	order          []string
}

func newTimeline() *timeline {
	return &timeline{started: map[string]int{}, ended: map[string]int{}}
}

func (tl *timeline) do(n *node, work time.Duration, err error) (outcome, error) {
	tl.mu.Lock()
	tl.running++
	tl.peak = max(tl.peak, tl.running)
	tl.clock++
	tl.started[n.ref.Name] = tl.clock
	tl.order = append(tl.order, n.ref.Name)
	tl.mu.Unlock()
	time.Sleep(work)
	tl.mu.Lock()
	tl.running--
	tl.clock++
	tl.ended[n.ref.Name] = tl.clock
	tl.mu.Unlock()
	if err != nil {
		return outcomeFailed, err
	}
	return outcomeApplied, nil
}

func TestRunBoundsWorkersAndWaitsForDependencies(t *testing.T) {
	// A chain a <- b <- c beside 30 independent nodes.
	nodes := []*node{cm("c", "b"), cm("b", "a"), cm("a")}
	for i := range 30 {
		nodes = append(nodes, cm(fmt.Sprintf("free-%02d", i)))
	}
	seq, depErrs := order(nodes)
	if len(depErrs) > 0 {
		t.Fatal(depErrs)
	}
	const workers = 4
	tl := newTimeline()
	outcomes, errs := run(nodes, seq, workers, func(i int) (outcome, error) {
		return tl.do(nodes[i], 5*time.Millisecond, nil)
	})
	for i, n := range nodes {
		if outcomes[i] != outcomeApplied || errs[i] != nil {
			t.Errorf("%s: outcome %d, error %v", n.ref.Name, outcomes[i], errs[i])
		}
	}
	if tl.peak < 2 || tl.peak > workers {
		t.Errorf("%d ran at once, want between 2 and %d", tl.peak, workers)
	}
	for _, dep := range [][2]string{{"a", "b"}, {"b", "c"}} {
		if tl.ended[dep[0]] > tl.started[dep[1]] {
			t.Errorf("%s started (t=%d) before its dependency %s ended (t=%d)", dep[1], tl.started[dep[1]], dep[0], tl.ended[dep[0]])
		}
	}
}

func TestRunOneWorkerFollowsTheOrder(t *testing.T) {
	nodes := []*node{cm("x", "z"), cm("y"), cm("z")}
	seq, _ := order(nodes)
	tl := newTimeline()
	run(nodes, seq, 1, func(i int) (outcome, error) { return tl.do(nodes[i], 0, nil) })
	var want []string
	for _, i := range seq {
		want = append(want, nodes[i].ref.Name)
	}
	if got := strings.Join(tl.order, ","); got != strings.Join(want, ",") || got != "y,z,x" {
		t.Fatalf("one worker ran %s, want the order %s (y,z,x)", got, strings.Join(want, ","))
	}
}

func TestRunReportsEachFailureAndSkipsItsDependents(t *testing.T) {
	nodes := []*node{cm("bad-1"), cm("needs-bad-1", "bad-1"), cm("needs-needs", "needs-bad-1"), cm("bad-2"), cm("fine"), cm("needs-fine", "fine")}
	known := cm("failed-before")
	known.failed = true
	nodes = append(nodes, known, cm("needs-failed-before", "failed-before"))
	seq, depErrs := order(nodes)
	if len(depErrs) > 0 {
		t.Fatal(depErrs)
	}
	var mu sync.Mutex
	ran := map[string]bool{}
	outcomes, errs := run(nodes, seq, 8, func(i int) (outcome, error) {
		name := nodes[i].ref.Name
		mu.Lock()
		ran[name] = true
		mu.Unlock()
		if strings.HasPrefix(name, "bad-") {
			return outcomeApplied, errors.New("refused: " + name) // the error wins over the outcome
		}
		return outcomeApplied, nil
	})
	got := map[string]string{}
	for i, n := range nodes {
		msg := "ok"
		if outcomes[i] != outcomeApplied {
			msg = fmt.Sprint(errs[i])
		}
		got[n.ref.Name] = msg
	}
	want := map[string]string{
		"bad-1":               "refused: bad-1",
		"needs-bad-1":         "not applied: depends on ConfigMap ns/bad-1, which was not applied",
		"needs-needs":         "not applied: depends on ConfigMap ns/needs-bad-1, which was not applied",
		"bad-2":               "refused: bad-2",
		"fine":                "ok",
		"needs-fine":          "ok",
		"failed-before":       "<nil>", // reported by the caller already
		"needs-failed-before": "not applied: depends on ConfigMap ns/failed-before, which was not applied",
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s: %q, want %q", name, got[name], w)
		}
	}
	for _, name := range []string{"needs-bad-1", "needs-needs", "failed-before", "needs-failed-before"} {
		if ran[name] {
			t.Errorf("%s was sent although it cannot be applied", name)
		}
	}
}
