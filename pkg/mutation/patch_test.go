package mutation

import (
	"encoding/json"
	"reflect"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	utiljson "k8s.io/apimachinery/pkg/util/json"
)

// checkPatch applies Patch(a, b) to a with an independent RFC 6902
// implementation and expects b.
func checkPatch(t testing.TB, a, b map[string]any) []PatchOp {
	t.Helper()
	ops := Patch(a, b)
	raw, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	p, err := jsonpatch.DecodePatch(raw)
	if err != nil {
		t.Fatalf("patch %s does not decode: %v", raw, err)
	}
	doc, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Apply(doc)
	if err != nil {
		t.Fatalf("patch %s does not apply to %s: %v", raw, doc, err)
	}
	var got map[string]any
	if err := utiljson.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, b) {
		t.Fatalf("patch %s turns %s into %s, want %v", raw, doc, out, b)
	}
	return ops
}

func TestPatch(t *testing.T) {
	a := decodeYAML(t, `{metadata: {name: p, "a/b~c": x}, spec: {containers: [{name: a, args: [x, w]}, {name: b}], gone: 1, n: null}}`)
	b := decodeYAML(t, `{metadata: {name: p, "a/b~c": yy, labels: {team: t}}, spec: {containers: [{name: a, args: [x]}, {name: b, image: i}, {name: c}], n: null, z: null}}`)
	ops := checkPatch(t, a, b)
	want := []PatchOp{
		{"replace", "/metadata/a~1b~0c", "yy"},
		{"add", "/metadata/labels", map[string]any{"team": "t"}},
		{"replace", "/spec/containers/0/args", []any{"x"}},
		{"add", "/spec/containers/1/image", "i"},
		{"add", "/spec/containers/2", map[string]any{"name": "c"}},
		{"remove", "/spec/gone", nil},
		{"add", "/spec/z", nil},
	}
	if !reflect.DeepEqual(ops, want) {
		t.Errorf("Patch = %#v\nwant %#v", ops, want)
	}
	if ops := Patch(a, a); len(ops) != 0 {
		t.Errorf("Patch of equal objects = %v", ops)
	}
}
