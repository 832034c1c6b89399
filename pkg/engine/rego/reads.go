package rego

import (
	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/open-policy-agent/opa/v1/ast"
)

var (
	inputReview     = ast.StringTerm("review")
	inputParameters = ast.StringTerm("parameters")
)

// readSet finds what the compiled modules read of input.review. The
// compiler has already resolved imports and aliases to full references, so
// a reference is the only way to reach input; one that uses input or
// input.review as a whole value, or selects it with a computed key before
// any constant one, is unbounded.
//
// A reference's constant keys are kept; a variable or number key becomes
// engine.Every, since whatever value it takes it selects one of the
// entries that Every digests. A reference that ends in such a key yields
// an element: the path then stops at the collection (the element is read
// whole), unless the element is bound to a variable whose every use is a
// reference with a key after it (c.image), whose paths then extend the
// element's — so templates that iterate containers read only the fields
// they name, not every container whole.
func readSet(modules map[string]*ast.Module) engine.ReadSet {
	var out engine.ReadSet
	for _, m := range modules {
		for _, imp := range m.Imports {
			ast.WalkRefs(imp, func(r ast.Ref) bool {
				if p, ok := inputPath(r, &out); ok && len(p) > 0 {
					out.Paths = append(out.Paths, dropTrailingEvery(p))
				}
				return false
			})
		}
	}
	x := &exports{paths: map[string][][]string{}, refs: map[string]ast.Ref{}}
	var rules []*ruleVars
	for _, m := range modules {
		for _, r := range m.Rules {
			a := newRuleVars(r)
			a.inputReads(&out, x)
			rules = append(rules, a)
		}
	}
	for _, a := range rules {
		a.exportReads(&out, x)
	}
	// input on its own is a variable, not a reference: more of them than
	// references starting with one means input is used as a value.
	vars, refs := 0, 0
	for _, m := range modules {
		ast.WalkTerms(m, func(t *ast.Term) bool {
			switch v := t.Value.(type) {
			case ast.Var:
				if v.Equal(ast.InputRootDocument.Value) {
					vars++
				}
			case ast.Ref:
				if v[0].Equal(ast.InputRootDocument) {
					refs++
				}
			}
			return false
		})
	}
	if out.All || vars > refs {
		return engine.ReadSet{All: true}
	}
	return out
}

// exports are the element sets that partial set rules build from
// input.review (input_containers[c] { c := input.review.object.spec.containers[_] }):
// the producing rule reads nothing of the elements it does not use
// itself, so each reference to the set must read what it uses of them.
type exports struct {
	paths map[string][][]string // by the set's ref: paths of its elements
	refs  map[string]ast.Ref
}

// newRuleVars indexes one rule's variables (its else chain included, which
// only makes the analysis more conservative: a name shared with the else
// branch counts its uses there too).
func newRuleVars(rule *ast.Rule) *ruleVars {
	a := &ruleVars{occurrences: map[ast.Var]int{}, keyed: map[ast.Var][]*ast.Term{}, bindings: map[ast.Var]int{}, bound: map[*ast.Term]ast.Var{}, inArray: map[*ast.Term]bool{}, rule: rule}
	// violation is read whole by the engine's query, outside the modules.
	if rule.Head.DocKind() == ast.PartialSetDoc && rule.Head.Ref().IsGround() && rule.Module != nil && !rule.Head.Ref()[0].Equal(ast.VarTerm("violation")) {
		if k, ok := rule.Head.Key.Value.(ast.Var); ok {
			a.headKey, a.set = k, rule.Ref()
		}
	}
	// Every occurrence of each variable, and those that head a reference
	// with at least one key after it.
	ast.WalkTerms(rule, func(t *ast.Term) bool {
		switch v := t.Value.(type) {
		case ast.Var:
			a.occurrences[v]++
		case ast.Ref:
			if head, ok := v[0].Value.(ast.Var); ok && len(v) >= 2 {
				a.keyed[head] = append(a.keyed[head], t)
			}
		case *ast.ArrayComprehension:
			// An array comprehension over a set's elements sees their
			// order and multiplicity, which depend on the whole elements.
			ast.WalkTerms(v, func(in *ast.Term) bool {
				a.inArray[in] = true
				return false
			})
		}
		return false
	})
	// Bindings of a variable to a reference: v = ref, either side (:= is
	// compiled to =), keyed by the reference term.
	ast.WalkExprs(rule, func(e *ast.Expr) bool {
		if e.Negated || !(e.IsEquality() || e.IsAssignment()) {
			return false
		}
		ops := e.Operands()
		if len(ops) != 2 {
			return false
		}
		for i, o := range ops {
			v, isVar := o.Value.(ast.Var)
			_, isRef := ops[1-i].Value.(ast.Ref)
			if !isVar || !isRef {
				continue
			}
			a.bindings[v]++
			a.bound[ops[1-i]] = v
		}
		return false
	})
	return a
}

// inputReads adds the rule's reads through references into input, and
// records the element sets it exports.
func (a *ruleVars) inputReads(out *engine.ReadSet, x *exports) {
	ast.WalkTerms(a.rule, func(t *ast.Term) bool {
		r, ok := t.Value.(ast.Ref)
		if !ok || out.All {
			return false
		}
		if path, ok := inputPath(r, out); ok {
			if _, complete := keys(r[2:]); complete {
				a.follow(t, path, 0, out, x)
			} else {
				out.Paths = append(out.Paths, path)
			}
		}
		return false
	})
}

// exportReads adds the rule's reads through references to exported
// element sets: a reference set[v] whose element is bound to a variable
// used only with keys reads those keys of every exported element; any
// other reference to the set, or to a document above it, reads the
// elements whole.
func (a *ruleVars) exportReads(out *engine.ReadSet, x *exports) {
	if len(x.paths) == 0 {
		return
	}
	ast.WalkTerms(a.rule, func(t *ast.Term) bool {
		r, ok := t.Value.(ast.Ref)
		if !ok || !r[0].Equal(ast.DefaultRootDocument) {
			return false
		}
		for name, set := range x.refs {
			if !overlaps(r, set) {
				continue
			}
			elem, isVar := ast.Var(""), false
			var rest []string
			complete := false
			if len(r) > len(set) {
				elem, isVar = r[len(set)].Value.(ast.Var)
				rest, complete = keys(r[len(set)+1:])
			}
			for _, p := range x.paths[name] {
				switch {
				case len(r) <= len(set) || !isVar || a.occurrences[elem] != 1 || !complete || a.inArray[t]:
					out.Paths = append(out.Paths, dropTrailingEvery(p))
				default:
					a.follow(t, append(append([]string(nil), p...), rest...), 0, out, nil)
				}
			}
		}
		return false
	})
}

// overlaps reports whether reference r can reach into the document at
// set: every key of r up to set's length is a variable or equals set's.
func overlaps(r, set ast.Ref) bool {
	for i := 1; i < len(r) && i < len(set); i++ {
		if _, isVar := r[i].Value.(ast.Var); isVar {
			continue
		}
		if !r[i].Equal(set[i]) {
			return false
		}
	}
	return true
}

// ruleVars is what ruleReads knows of one rule's variables.
type ruleVars struct {
	occurrences map[ast.Var]int
	keyed       map[ast.Var][]*ast.Term
	bindings    map[ast.Var]int
	bound       map[*ast.Term]ast.Var
	inArray     map[*ast.Term]bool
	rule        *ast.Rule
	// headKey is the key variable of a partial set rule, set its ref.
	headKey ast.Var
	set     ast.Ref
}

// maxFollow bounds how many bindings in a chain (obj := input.review.object;
// c := obj.spec.containers[_]; c.image) follow handles before it reads the
// value whole.
const maxFollow = 8

// follow adds what the reference term t, which reads path, reads: path
// itself, or, when t is bound to a variable used only as the head of
// keyed references, the path each of those reads through it.
func (a *ruleVars) follow(t *ast.Term, path []string, depth int, out *engine.ReadSet, x *exports) {
	v, isBound := a.bound[t]
	// The binding itself plus one occurrence per keyed use: any other
	// occurrence uses the value whole (an argument, a value, a
	// comparison, a message) — but for the key of a partial set rule,
	// whose references then read what they use of it.
	exported := 0
	if isBound && x != nil && a.set != nil && v == a.headKey {
		exported = 1
	}
	if !isBound || depth >= maxFollow || a.bindings[v] != 1 || a.occurrences[v] != 1+len(a.keyed[v])+exported {
		out.Paths = append(out.Paths, dropTrailingEvery(path))
		return
	}
	if exported == 1 {
		name := a.set.String()
		x.paths[name] = append(x.paths[name], path)
		x.refs[name] = a.set
	}
	for _, use := range a.keyed[v] {
		suffix, complete := keys(use.Value.(ast.Ref)[1:])
		p := append(append([]string(nil), path...), suffix...)
		if !complete {
			out.Paths = append(out.Paths, dropTrailingEvery(p))
			continue
		}
		a.follow(use, p, depth+1, out, x)
	}
}

// inputPath is the path a reference reads under input.review; ok is false
// for references that are not into input or are into input.parameters. A
// reference it cannot bound sets out.All.
func inputPath(r ast.Ref, out *engine.ReadSet) ([]string, bool) {
	if !r[0].Equal(ast.InputRootDocument) {
		return nil, false
	}
	if len(r) >= 2 && r[1].Equal(inputParameters) {
		return nil, false
	}
	if len(r) < 3 || !r[1].Equal(inputReview) {
		out.All = true
		return nil, false
	}
	if _, ok := r[2].Value.(ast.String); !ok {
		out.All = true
		return nil, false
	}
	path, complete := keys(r[2:])
	if !complete {
		// Nothing can follow a path that stopped early.
		return dropTrailingEvery(path), true
	}
	return path, true
}

// keys turns reference keys into a path: constant strings as they are,
// variables and numbers as engine.Every, stopping at anything else (then
// complete is false: the path reads the value where it stopped whole).
func keys(ts []*ast.Term) (path []string, complete bool) {
	for _, t := range ts {
		switch k := t.Value.(type) {
		case ast.String:
			path = append(path, string(k))
		case ast.Var, ast.Number:
			path = append(path, engine.Every)
		default:
			return path, false
		}
	}
	return path, true
}

// dropTrailingEvery turns a path to every element into the path to the
// collection, which reads the same values.
func dropTrailingEvery(p []string) []string {
	for len(p) > 0 && p[len(p)-1] == engine.Every {
		p = p[:len(p)-1]
	}
	return p
}

// ReadSet implements engine.ReadSetter.
func (p *Program) ReadSet() engine.ReadSet { return p.reads }
