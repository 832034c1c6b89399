package engine

import (
	"sort"

	"github.com/bouncer-policy/bouncer/pkg/apis"
)

// Resultant is an object an ExpansionTemplate derives from another (the
// Pod of a Deployment's template), as admission and the audit review it.
type Resultant struct {
	// Expansion names the ExpansionTemplate.
	Expansion string
	Review    *Review
}

// Resultants derives what the ExpansionTemplates make of r, in the order of
// their names: what `bouncer expand` prints. It checks every template as
// AddExpansion does.
func Resultants(templates []*apis.ExpansionTemplate, r *Review) ([]Resultant, error) {
	xs := make([]*Expansion, 0, len(templates))
	for _, t := range templates {
		x, err := compileExpansion(t)
		if err != nil {
			return nil, err
		}
		xs = append(xs, x)
	}
	sort.Slice(xs, func(i, j int) bool { return xs[i].Name < xs[j].Name })
	var out []Resultant
	if r.Object == nil {
		return nil, nil
	}
	for _, x := range xs {
		if !x.appliesTo(r.Kind) {
			continue
		}
		if child, ok := x.generate(r); ok {
			out = append(out, Resultant{Expansion: x.Name, Review: child})
		}
	}
	return out, nil
}
