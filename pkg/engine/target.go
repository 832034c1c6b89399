package engine

import (
	"github.com/bouncer-policy/bouncer/pkg/match"
)

// targetOf extracts what matching needs from a review. On DELETE the object
// is gone, so the old object's labels are used, as in Gatekeeper.
func targetOf(r *Review) *match.Target {
	obj := r.Object
	if obj == nil || r.Operation == "DELETE" {
		if r.OldObject != nil {
			obj = r.OldObject
		}
	}
	t := &match.Target{
		Group:     r.Kind.Group,
		Kind:      r.Kind.Kind,
		Name:      r.Name,
		Namespace: r.Namespace,
		Generated: r.Source == "Generated",
	}
	meta, _ := obj["metadata"].(map[string]any)
	if t.Name == "" {
		t.Name, _ = meta["name"].(string)
	}
	if t.Namespace == "" {
		t.Namespace, _ = meta["namespace"].(string)
	}
	t.Labels = stringMap(meta["labels"])
	if r.NamespaceObject != nil {
		nsMeta, _ := r.NamespaceObject["metadata"].(map[string]any)
		t.NamespaceLabels = stringMap(nsMeta["labels"])
		t.NamespaceKnown = true
	}
	return t
}

func stringMap(v any) map[string]string {
	m, ok := v.(map[string]any)
	if !ok || len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, x := range m {
		if s, ok := x.(string); ok {
			out[k] = s
		}
	}
	return out
}
