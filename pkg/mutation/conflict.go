package mutation

import (
	"fmt"
	"sort"
	"strings"
)

// A location implies a schema: each node says what its parent field holds
// (an object, a list keyed by some field, a set, a string). Two mutators
// bound to the same kind that disagree would undo each other forever, so
// Gatekeeper refuses to apply either; so does this package.

// schemaNode is one node's implied type, keyed by the node's place with
// list selectors generalised ("spec.containers[].image").
type schemaNode struct {
	place string
	typ   string // "" means any: Assign's terminal value
}

func (m *Mutator) schema() []schemaNode {
	out := make([]schemaNode, len(m.path))
	var place strings.Builder
	for i, n := range m.path {
		if n.List {
			place.WriteString("[]")
		} else {
			if i > 0 {
				place.WriteString(".")
			}
			place.WriteString(quoteIfNeeded(n.Field))
		}
		typ := ""
		switch {
		case i+1 < len(m.path) && m.path[i+1].List:
			typ = "a list keyed by " + m.path[i+1].KeyField
		case i+1 < len(m.path), n.List:
			typ = "an object"
		case m.terminal == terminalSet:
			typ = "a set (ModifySet)"
		case m.terminal == terminalString:
			typ = "a string (AssignImage)"
		}
		out[i] = schemaNode{place: place.String(), typ: typ}
	}
	return out
}

// bindings are the group/version/kind triples a mutator's schema is about.
func (m *Mutator) bindings() []string {
	var out []string
	for _, a := range m.applyTo {
		for _, g := range a.Groups {
			for _, v := range a.Versions {
				for _, k := range a.Kinds {
					gv := v
					if g != "" {
						gv = g + "/" + v
					}
					out = append(out, gv+" "+k)
				}
			}
		}
	}
	return out
}

// findConflicts returns an error for every mutator whose schema disagrees
// with another's on a kind both are bound to.
func findConflicts(ms []*Mutator) map[ID]error {
	type claim struct {
		id  ID
		typ string
	}
	// binding → place → the claims made on it
	claims := map[string]map[string][]claim{}
	for _, m := range ms {
		if m.metadataOnly {
			continue
		}
		nodes := m.schema()
		for _, b := range m.bindings() {
			places := claims[b]
			if places == nil {
				places = map[string][]claim{}
				claims[b] = places
			}
			for _, n := range nodes {
				if n.typ != "" {
					places[n.place] = append(places[n.place], claim{m.id, n.typ})
				}
			}
		}
	}
	reasons := map[ID]map[string]bool{}
	add := func(id ID, reason string) {
		if reasons[id] == nil {
			reasons[id] = map[string]bool{}
		}
		reasons[id][reason] = true
	}
	for b, places := range claims {
		for place, cs := range places {
			for i, a := range cs {
				for _, c := range cs[i+1:] {
					if a.typ == c.typ || a.id == c.id {
						continue
					}
					add(a.id, fmt.Sprintf("%s says %s of %s is %s, %s says %s", a.id, place, b, a.typ, c.id, c.typ))
					add(c.id, fmt.Sprintf("%s says %s of %s is %s, %s says %s", c.id, place, b, c.typ, a.id, a.typ))
				}
			}
		}
	}
	out := make(map[ID]error, len(reasons))
	for id, rs := range reasons {
		list := make([]string, 0, len(rs))
		for r := range rs {
			list = append(list, r)
		}
		sort.Strings(list)
		out[id] = fmt.Errorf("%w: %s; none of them is applied", ErrConflict, strings.Join(list, "; "))
	}
	return out
}
