package mutation

import (
	"fmt"
	"reflect"
)

// target is the object being mutated, for fromMetadata.
type target struct {
	name, namespace string
}

// apply runs the mutator once on obj, in place, and reports whether it
// changed anything. Nothing is created unless the leaf changes: a glob over
// an empty list or a failed path test leaves no empty parents behind.
func (m *Mutator) apply(obj map[string]any, t target) (bool, error) {
	_, changed, err := m.walk(obj, 0, t)
	return changed, err
}

// walk mutates cur, the value at node depth-1, for nodes depth and on; it
// returns the value to store back in the parent when changed.
func (m *Mutator) walk(cur any, depth int, t target) (any, bool, error) {
	n := m.path[depth]
	last := depth == len(m.path)-1
	if n.List {
		list, ok := cur.([]any)
		if !ok {
			return nil, false, fmt.Errorf("%s is %s, not a list", m.path[:depth], typeName(cur))
		}
		if last {
			return m.setListElement(list, n, depth)
		}
		return m.walkList(list, n, depth, t)
	}
	obj, ok := cur.(map[string]any)
	if !ok {
		where := "the object"
		if depth > 0 {
			where = m.path[:depth].String()
		}
		return nil, false, fmt.Errorf("%s is %s, not an object", where, typeName(cur))
	}
	next, exists := obj[n.Field]
	if exists && !m.existsOkay(depth) || !exists && !m.missingOkay(depth) {
		return nil, false, nil
	}
	if last {
		changed, err := m.setLeaf(obj, n.Field, next, exists, t)
		return obj, changed, err
	}
	if !exists || next == nil {
		next = m.newElement(depth)
	}
	v, changed, err := m.walk(next, depth+1, t)
	if err != nil || !changed {
		return nil, false, err
	}
	obj[n.Field] = v
	return obj, true, nil
}

func (m *Mutator) walkList(list []any, n Node, depth int, t target) (any, bool, error) {
	if n.Glob {
		// A glob never creates elements, and cannot satisfy MustNotExist.
		if !m.existsOkay(depth) {
			return nil, false, nil
		}
		changed := false
		for i, e := range list {
			v, c, err := m.walk(e, depth+1, t)
			if err != nil {
				return nil, false, err
			}
			if c {
				list[i] = v
				changed = true
			}
		}
		return list, changed, nil
	}
	found, changed := false, false
	for i, e := range list {
		if !keyMatches(e, n) {
			continue
		}
		found = true
		if !m.existsOkay(depth) {
			return nil, false, nil
		}
		v, c, err := m.walk(e, depth+1, t)
		if err != nil {
			return nil, false, err
		}
		if c {
			list[i] = v
			changed = true
		}
	}
	if found {
		return list, changed, nil
	}
	if !m.missingOkay(depth) {
		return nil, false, nil
	}
	v, c, err := m.walk(map[string]any{n.KeyField: n.keyValue()}, depth+1, t)
	if err != nil || !c {
		return nil, false, err
	}
	return append(list, v), true, nil
}

// setListElement puts an Assign's object value in place of the element
// with the location's key, or appends it.
func (m *Mutator) setListElement(list []any, n Node, depth int) (any, bool, error) {
	for i, e := range list {
		if !keyMatches(e, n) {
			continue
		}
		if !m.existsOkay(depth) || reflect.DeepEqual(e, m.value) {
			return nil, false, nil
		}
		list[i] = deepCopy(m.value)
		return list, true, nil
	}
	if !m.missingOkay(depth) {
		return nil, false, nil
	}
	return append(list, deepCopy(m.value)), true, nil
}

func keyMatches(e any, n Node) bool {
	obj, ok := e.(map[string]any)
	if !ok {
		return false
	}
	v, ok := obj[n.KeyField]
	return ok && v == n.keyValue()
}

// newElement is the empty value node depth+1 expects; the element of a
// keyed list starts with its key.
func (m *Mutator) newElement(depth int) any {
	if m.path[depth+1].List {
		return []any{}
	}
	return map[string]any{}
}

// setLeaf gives obj[key] the mutator's value and reports a change.
func (m *Mutator) setLeaf(obj map[string]any, key string, old any, exists bool, t target) (bool, error) {
	switch {
	case m.image != nil:
		s := ""
		if exists {
			var ok bool
			if s, ok = old.(string); !ok {
				return false, fmt.Errorf("%s is %s, not an image string", m.path, typeName(old))
			}
		}
		v := m.image.apply(s)
		if exists && v == s {
			return false, nil
		}
		obj[key] = v
		return true, nil
	case m.setOp != "":
		return m.modifySet(obj, key, old, exists)
	}
	v := m.value
	switch m.fromMetadata {
	case "name":
		v = t.name
	case "namespace":
		v = t.namespace
	}
	if m.metadataOnly && exists {
		// AssignMetadata only adds: an existing label or annotation wins.
		return false, nil
	}
	if exists && reflect.DeepEqual(old, v) {
		return false, nil
	}
	obj[key] = deepCopy(v)
	return true, nil
}

func (m *Mutator) modifySet(obj map[string]any, key string, old any, exists bool) (bool, error) {
	if !exists || old == nil {
		if m.setOp == OpPrune || len(m.setValues) == 0 {
			return false, nil
		}
		obj[key] = deepCopy(m.setValues)
		return true, nil
	}
	list, ok := old.([]any)
	if !ok {
		return false, fmt.Errorf("%s is %s, not a list to use as a set", m.path, typeName(old))
	}
	if m.setOp == OpMerge {
		changed := false
		for _, v := range m.setValues {
			if !containsValue(list, v) {
				list = append(list, deepCopy(v))
				changed = true
			}
		}
		if changed {
			obj[key] = list
		}
		return changed, nil
	}
	kept := make([]any, 0, len(list))
	for _, e := range list {
		if !containsValue(m.setValues, e) {
			kept = append(kept, e)
		}
	}
	if len(kept) == len(list) {
		return false, nil
	}
	obj[key] = kept
	return true, nil
}

func containsValue(list []any, v any) bool {
	for _, e := range list {
		if reflect.DeepEqual(e, v) {
			return true
		}
	}
	return false
}

// deepCopy copies JSON-like values; other values (never produced by the
// decoders) are shared.
func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = deepCopy(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = deepCopy(e)
		}
		return out
	default:
		return v
	}
}
