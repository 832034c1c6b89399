package mutation

import (
	"encoding/json"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// PatchOp is one RFC 6902 operation.
type PatchOp struct {
	Op    string
	Path  string
	Value any
}

// MarshalJSON writes value for add and replace even when it is null.
func (o PatchOp) MarshalJSON() ([]byte, error) {
	if o.Op == "remove" {
		return json.Marshal(struct {
			Op   string `json:"op"`
			Path string `json:"path"`
		}{o.Op, o.Path})
	}
	return json.Marshal(struct {
		Op    string `json:"op"`
		Path  string `json:"path"`
		Value any    `json:"value"`
	}{o.Op, o.Path, o.Value})
}

// Patch returns the RFC 6902 JSON patch that turns original into mutated.
// The operations come in a fixed order (object keys sorted, list indexes
// ascending), so the same change always gives the same patch: reviewers
// diff patches, and admission responses are compared in tests. A list that
// only grows gets "add" operations; one that shrinks is replaced whole,
// which keeps every operation's index valid without reasoning about moves.
func Patch(original, mutated map[string]any) []PatchOp {
	var ops []PatchOp
	diffValue("", original, mutated, &ops)
	return ops
}

func diffValue(path string, a, b any, ops *[]PatchOp) {
	switch x := a.(type) {
	case map[string]any:
		if y, ok := b.(map[string]any); ok {
			diffObject(path, x, y, ops)
			return
		}
	case []any:
		if y, ok := b.([]any); ok && len(y) >= len(x) {
			for i := range x {
				diffValue(path+"/"+strconv.Itoa(i), x[i], y[i], ops)
			}
			for i := len(x); i < len(y); i++ {
				*ops = append(*ops, PatchOp{Op: "add", Path: path + "/" + strconv.Itoa(i), Value: y[i]})
			}
			return
		}
	}
	if !reflect.DeepEqual(a, b) {
		*ops = append(*ops, PatchOp{Op: "replace", Path: path, Value: b})
	}
}

func diffObject(path string, a, b map[string]any, ops *[]PatchOp) {
	keys := make([]string, 0, len(a)+len(b))
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		p := path + "/" + escapePointer(k)
		av, inA := a[k]
		bv, inB := b[k]
		switch {
		case !inB:
			*ops = append(*ops, PatchOp{Op: "remove", Path: p})
		case !inA:
			*ops = append(*ops, PatchOp{Op: "add", Path: p, Value: bv})
		default:
			diffValue(p, av, bv, ops)
		}
	}
}

// escapePointer escapes a JSON pointer token (RFC 6901).
func escapePointer(s string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}
