package mapgen

import (
	"context"
	"errors"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/mutation"
)

// FuzzGenerate builds mutators from arbitrary locations, values and path
// tests. Generate must never panic; whatever it generates must compile
// and, run by the apiserver's JSON patcher on the test Pods, give
// pkg/mutation's result, or fail where pkg/mutation fails.
func FuzzGenerate(f *testing.F) {
	f.Add(uint8(0), "spec.containers[name: *].securityContext.runAsUser", `1000`, 2, false)
	f.Add(uint8(1), "spec.containers[name: *].securityContext.capabilities.drop", `["ALL","NET_RAW"]`, 0, false)
	f.Add(uint8(2), "spec.containers[name: *].securityContext.capabilities.add", `["NET_ADMIN"]`, 4, true)
	f.Add(uint8(3), "metadata.labels.team", `"x"`, 0, false)
	f.Add(uint8(0), "spec.containers[name: sidecar].ports[containerPort: 80].name", `"http"`, 3, true)
	f.Add(uint8(0), "spec.containers[name: app]", `{"name":"app","image":"y"}`, 1, false)
	f.Add(uint8(0), "spec.securityContext.seccompProfile", `{"type":"RuntimeDefault","x":[1,2.5,null,true]}`, 2, true)
	objs := make([]*unstructured.Unstructured, len(pods))
	for i, src := range podsSrc() {
		objs[i] = decodeObject(f, src)
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, kind uint8, location, valueJSON string, testDepth int, mustExist bool) {
		var value any
		if err := utiljson.Unmarshal([]byte(valueJSON), &value); err != nil {
			return
		}
		in := &apis.Mutator{}
		in.APIVersion = apis.MutationsGroup + "/v1"
		in.Name = "fuzz"
		in.Spec.Location = location
		in.Spec.ApplyTo = []apis.MutationApplyTo{{Groups: []string{""}, Kinds: []string{"Pod"}, Versions: []string{"v1"}}}
		switch kind % 4 {
		case 0:
			in.Kind = apis.KindAssign
			in.Spec.Parameters.Assign = &apis.AssignField{Value: &apis.AnyValue{Value: value}}
		case 1, 2:
			in.Kind = apis.KindModifySet
			in.Spec.Parameters.Operation = map[uint8]string{1: "merge", 2: "prune"}[kind%4]
			list, _ := value.([]any)
			in.Spec.Parameters.Values = &apis.ModifyValues{FromList: list}
		default:
			in.Kind = apis.KindAssignMetadata
			in.Spec.ApplyTo = nil
			in.Spec.Parameters.Assign = &apis.AssignField{Value: &apis.AnyValue{Value: value}}
		}
		if p, err := mutation.ParsePath(location); err == nil && testDepth > 0 && testDepth <= len(p) {
			cond := mutation.MustNotExist
			if mustExist {
				cond = mutation.MustExist
			}
			in.Spec.Parameters.PathTests = []apis.PathTest{{SubPath: p[:testDepth].String(), Condition: cond}}
		}
		m, err := mutation.Compile(in)
		g, gerr := Generate(in, Options{})
		if err != nil {
			if gerr == nil {
				t.Fatalf("Generate accepted a mutator Bouncer refuses: %v", err)
			}
			return
		}
		var ue *UnsupportedError
		if errors.As(gerr, &ue) {
			return
		}
		if gerr != nil {
			t.Fatalf("Generate: %v", gerr)
		}
		p, err := Compile(g.Policy)
		if err != nil {
			t.Fatal(err)
		}
		sys := mutation.NewSystem()
		if err := sys.Add(m); err != nil {
			t.Fatal(err)
		}
		for _, pod := range objs {
			want := pod.DeepCopy()
			_, _, werr := sys.Mutate(want, nil, "CREATE")
			got, _, aerr := p.Apply(ctx, pod, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: pod.GetNamespace()}}, "CREATE")
			if (werr != nil) != (aerr != nil) {
				t.Fatalf("pkg/mutation error %v, policy error %v\n%s", werr, aerr, g.Policy.Spec.Mutations[0].JSONPatch.Expression)
			}
			if werr != nil {
				continue
			}
			if !reflect.DeepEqual(normal(t, got.Object), normal(t, want.Object)) {
				t.Fatalf("on %s: policy gives %v, pkg/mutation %v\n%s", pod.GetName(), got.Object, want.Object, g.Policy.Spec.Mutations[0].JSONPatch.Expression)
			}
		}
	})
}
