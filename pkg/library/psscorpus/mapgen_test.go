package psscorpus

import (
	"context"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/yaml"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/library"
	"github.com/bouncer-policy/bouncer/pkg/mapgen"
	bmutation "github.com/bouncer-policy/bouncer/pkg/mutation"
)

// TestGeneratedPoliciesMutateCorpusAsBouncer generates the
// MutatingAdmissionPolicy of every library mutator, runs them with the
// apiserver's JSON patcher on every corpus Pod, and requires the result
// pkg/mutation gives. The library's mutators write disjoint fields, so one
// pass of the policies is the fixed point the System reaches.
func TestGeneratedPoliciesMutateCorpusAsBouncer(t *testing.T) {
	ms, err := library.Mutators()
	if err != nil {
		t.Fatal(err)
	}
	sys := bmutation.NewSystem()
	var policies []*mapgen.Policy
	for _, m := range ms {
		c, err := bmutation.Decode(m.Object)
		if err != nil {
			t.Fatal(err)
		}
		if err := sys.Add(c); err != nil {
			t.Fatal(err)
		}
		b, err := utiljson.Marshal(m.Object)
		if err != nil {
			t.Fatal(err)
		}
		in := &apis.Mutator{}
		if err := utiljson.Unmarshal(b, in); err != nil {
			t.Fatal(err)
		}
		g, err := mapgen.Generate(in, mapgen.Options{})
		if err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		p, err := mapgen.Compile(g.Policy)
		if err != nil {
			t.Fatal(err)
		}
		policies = append(policies, p)
	}
	pods, _ := corpus(2, 1500, 4)
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "corpus"}}
	changed := 0
	for i, p := range pods {
		obj, err := podObject(p)
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{Object: obj}
		u.SetNamespace("corpus")
		want := u.DeepCopy()
		c, _, err := sys.Mutate(want, nil, "CREATE")
		if err != nil {
			t.Fatalf("pod %d: %v", i, err)
		}
		if c {
			changed++
		}
		got := u
		for _, pol := range policies {
			if got, _, err = pol.Apply(ctx, got, ns, "CREATE"); err != nil {
				t.Fatalf("pod %d: %v", i, err)
			}
		}
		if g, w := roundTrip(t, got.Object), roundTrip(t, want.Object); !reflect.DeepEqual(g, w) {
			gy, _ := yaml.Marshal(g)
			wy, _ := yaml.Marshal(w)
			t.Fatalf("pod %d: policies give\n%s\npkg/mutation gives\n%s", i, gy, wy)
		}
	}
	if changed < len(pods)/4 {
		t.Fatalf("only %d of %d pods changed: the comparison proves little", changed, len(pods))
	}
	t.Logf("%d pods, %d changed, identical under the generated policies and pkg/mutation", len(pods), changed)
}

func roundTrip(t *testing.T, obj map[string]any) map[string]any {
	t.Helper()
	b, err := utiljson.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := utiljson.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}
