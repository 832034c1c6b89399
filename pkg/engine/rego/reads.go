package rego

import (
	"fmt"
	"maps"
	"strings"

	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/open-policy-agent/opa/v1/ast"
)

var (
	inputReview     = ast.StringTerm("review")
	inputParameters = ast.StringTerm("parameters")
)

// readSets finds what the compiled modules read of input.review, and the
// decision reads (see analyseReads) beside. The
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
func readSets(modules map[string]*ast.Module) (reads, decision engine.ReadSet) {
	rules := specialisedRules(modules)
	return analyseReads(modules, rules, false), analyseReads(modules, rules, true)
}

// specialisedRules are the modules' rules, each once per combination of
// the constants its variables take (keyDomains, iterationDomains): the
// copies both analyses read.
func specialisedRules(modules map[string]*ast.Module) []*ast.Rule {
	var out []*ast.Rule
	domains, consts := keyDomains(modules), constantRules(modules)
	for _, m := range modules {
		for _, r := range m.Rules {
			doms := iterationDomains(r, consts)
			if len(domains[r]) > 0 {
				if doms == nil {
					doms = map[ast.Var][]ast.String{}
				}
				maps.Copy(doms, domains[r])
			}
			out = append(out, specialised(r, doms)...)
		}
	}
	return out
}

// analyseReads finds what rules read; with decision, the references that
// only shape the violations' messages (messageTerms) are read for whether
// they are there.
func analyseReads(modules map[string]*ast.Module, copies []*ast.Rule, decision bool) engine.ReadSet {
	var out engine.ReadSet
	for _, m := range modules {
		for _, imp := range m.Imports {
			ast.WalkRefs(imp, func(r ast.Ref) bool {
				if p, ok := inputPath(r, &out); ok && len(p) > 0 {
					readWhole(&out, p)
				}
				return false
			})
		}
	}
	x := &exports{paths: map[string][][]string{}, refs: map[string]ast.Ref{}, objects: map[string]bool{}}
	var rules []*ruleVars
	funcs := map[string][]*ruleVars{}
	for _, sr := range copies {
		a := newRuleVars(sr)
		if decision {
			var inMessages map[ast.Var]int
			a.messageOnly, inMessages = messageTerms(sr)
			for v, n := range inMessages {
				a.occurrences[v] -= n
			}
		}
		rules = append(rules, a)
		if len(sr.Head.Args) > 0 && sr.Module != nil {
			funcs[sr.Ref().String()] = append(funcs[sr.Ref().String()], a)
		}
	}
	// Every rule knows the functions before any is followed into one.
	specs := map[string]*ruleVars{}
	for _, a := range rules {
		a.funcs, a.specs = funcs, specs
	}
	for _, a := range rules {
		a.inputReads(&out, x)
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
	// objects are the partial object rules among them: a reference
	// obj[k] is to one value, whatever the key.
	objects map[string]bool
}

// newRuleVars indexes one rule's variables (its else chain included, which
// only makes the analysis more conservative: a name shared with the else
// branch counts its uses there too).
func newRuleVars(rule *ast.Rule) *ruleVars {
	a := &ruleVars{occurrences: map[ast.Var]int{}, keyed: map[ast.Var][]*ast.Term{}, bindings: map[ast.Var]int{}, bound: map[*ast.Term]ast.Var{}, inArray: map[*ast.Term]bool{},
		args: map[*ast.Term]callArg{}, passed: map[ast.Var][]callArg{}, gets: map[ast.Var][]callArg{}, rule: rule}
	// violation is read whole by the engine's query, outside the modules.
	if rule.Head.DocKind() == ast.PartialSetDoc && rule.Head.Ref().IsGround() && rule.Module != nil && !isViolationRule(rule) {
		if k, ok := rule.Head.Key.Value.(ast.Var); ok {
			a.headKey, a.set = k, rule.Ref()
		}
	}
	// A partial object rule's value likewise (input_containers[c.name] = c
	// { c := input.review.object.spec.containers[_] }): its key is read
	// here, through the variable's keyed use.
	if h := rule.Head; h.DocKind() == ast.PartialObjectDoc && h.Value != nil && h.Key != nil && rule.Module != nil &&
		len(h.Reference) == 2 && h.Reference[1].Equal(h.Key) && h.Reference[:1].IsGround() {
		if v, ok := h.Value.Value.(ast.Var); ok {
			ref := rule.Ref()
			a.headKey, a.set, a.objectDoc = v, ref[:len(ref)-1], true
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
		case ast.Call:
			a.callArgs(v[0], v[1:])
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
		if e.IsCall() {
			a.callArgs(e.OperatorTerm(), e.Operands())
		}
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

// callArgs records the arguments of a call by position. A call of a
// function defined in the modules reads of an argument what the
// function's body reads of the parameter, which follow and inputReads
// look up (Gatekeeper's templates pass input.review whole to helpers
// such as is_update(review), which read one field of it).
func (a *ruleVars) callArgs(op *ast.Term, args []*ast.Term) {
	ref, ok := op.Value.(ast.Ref)
	if !ok {
		return
	}
	fn := ref.String()
	for i, arg := range args {
		c := callArg{fn: fn, idx: i, args: args}
		a.args[arg] = c
		if v, isVar := arg.Value.(ast.Var); isVar {
			if _, ok := objectGetKeys(c); ok {
				a.gets[v] = append(a.gets[v], c)
				continue
			}
			a.passed[v] = append(a.passed[v], c)
		}
	}
}

// callArg is one argument of a call: the function's reference and the
// argument's position.
type callArg struct {
	fn   string
	idx  int
	args []*ast.Term
}

// objectGet is the builtin object.get(x, key, default), which reads x's
// value at a constant key (or key path) and nothing else of x.
const objectGet = "object.get"

// objectGetKeys are the constant keys object.get(x, key, _) reads x at:
// a string key or an array of them (a key path); ok is false for any
// other call or key.
func objectGetKeys(c callArg) ([]*ast.Term, bool) {
	if c.fn != objectGet || c.idx != 0 || len(c.args) < 3 {
		return nil, false
	}
	switch k := c.args[1].Value.(type) {
	case ast.String:
		return c.args[1:2], true
	case *ast.Array:
		out := make([]*ast.Term, k.Len())
		for i := range out {
			if _, ok := k.Elem(i).Value.(ast.String); !ok {
				return nil, false
			}
			out[i] = k.Elem(i)
		}
		return out, true
	}
	return nil, false
}

// readGets adds the reads of the object.get calls on v, whose value is at
// path: each reads the value at its key whole.
func (a *ruleVars) readGets(v ast.Var, path []string, out *engine.ReadSet) {
	for _, c := range a.gets[v] {
		ks, _ := objectGetKeys(c)
		p, _ := keys(ks)
		readWhole(out, append(append([]string(nil), path...), p...))
	}
}

// followCall adds what the function fn reads of the argument at idx,
// which is the value at path: each definition's parameter, when it is a
// variable used only as the head of keyed references or passed on to
// another such function, reads those keys; otherwise the value whole. It
// reports false when fn is not a function of the modules (a builtin).
func (a *ruleVars) followCall(c callArg, path []string, depth int, out *engine.ReadSet) bool {
	defs := a.funcs[c.fn]
	if len(defs) == 0 {
		return false
	}
	for _, d := range defs {
		d = d.withConstants(c)
		if c.idx >= len(d.rule.Head.Args) {
			// The output of a call written with its result as the last
			// argument: not an input of the function.
			return false
		}
		param, isVar := d.rule.Head.Args[c.idx].Value.(ast.Var)
		if !isVar || depth >= maxFollow || d.bindings[param] != 0 || d.occurrences[param] != 1+len(d.keyed[param])+d.knownCalls(param)+len(d.gets[param]) {
			readWhole(out, path)
			continue
		}
		if d.occurrences[param] == 1 {
			// An argument the function ignores still has to be defined
			// for the call to be, whatever its value.
			readPresence(out, path)
			continue
		}
		d.readUses(param, path, depth, out, nil)
	}
	return true
}

// withConstants is the function definition d with the constant
// arguments of call c in place of the parameters they bind, other than
// the one being followed: has_field(c, "securityContext") with
// has_field(o, f) { o[f] } reads c.securityContext, where o[f] alone
// would read every field of c. Arguments are bound before the body is
// evaluated, so the copy reads what the call does.
func (d *ruleVars) withConstants(c callArg) *ruleVars {
	subst := map[ast.Var]*ast.Term{}
	var key strings.Builder
	for i, arg := range c.args {
		if i == c.idx || i >= len(d.rule.Head.Args) {
			continue
		}
		param, isVar := d.rule.Head.Args[i].Value.(ast.Var)
		if !isVar || param.IsWildcard() || !ast.IsScalar(arg.Value) {
			continue
		}
		subst[param] = arg
		fmt.Fprintf(&key, "%d=%v;", i, arg)
	}
	if len(subst) == 0 || d.specs == nil {
		return d
	}
	id := fmt.Sprintf("%p|%s", d.rule, key.String())
	if s, ok := d.specs[id]; ok {
		return s
	}
	cp := d.rule.Copy()
	if _, err := ast.TransformVars(cp, func(v ast.Var) (ast.Value, error) {
		if t, ok := subst[v]; ok {
			return t.Value, nil
		}
		return v, nil
	}); err != nil {
		return d
	}
	s := newRuleVars(cp)
	s.funcs, s.specs = d.funcs, d.specs
	d.specs[id] = s
	return s
}

// knownCalls counts the calls that pass v to a function of the modules
// as one of its parameters.
func (a *ruleVars) knownCalls(v ast.Var) int {
	n := 0
	for _, c := range a.passed[v] {
		if defs := a.funcs[c.fn]; len(defs) > 0 && c.idx < len(defs[0].rule.Head.Args) {
			n++
		}
	}
	return n
}

// reviewPath is the path of a reference to input.review or below it by
// constant keys only; ok is false for anything else.
func reviewPath(r ast.Ref) ([]string, bool) {
	if len(r) < 2 || !r[0].Equal(ast.InputRootDocument) || !r[1].Equal(inputReview) {
		return nil, false
	}
	for _, k := range r[2:] {
		if _, ok := k.Value.(ast.String); !ok {
			return nil, false
		}
	}
	p, _ := keys(r[2:])
	return p, true
}

// inputReads adds the rule's reads through references into input, and
// records the element sets it exports.
func (a *ruleVars) inputReads(out *engine.ReadSet, x *exports) {
	ast.WalkTerms(a.rule, func(t *ast.Term) bool {
		r, ok := t.Value.(ast.Ref)
		if !ok || out.All {
			return false
		}
		// input.review whole is bounded when it goes only to functions
		// of the modules: directly, or through the variable the compiler
		// binds it to (is_update(input.review) compiles to
		// __local0__ = input.review; is_update(__local0__)).
		// Gatekeeper's exemption library reads its parameters with
		// object.get(object.get(input, "parameters", {}), ...): input as
		// a value (bound to a variable by the compiler), but read only
		// at constant keys.
		// Passed whole to a function of the modules
		// (get_allowed_proc_mount(input)), it reads what the function's
		// body reads of the parameter, from input's root.
		if v, isBound := a.bound[t]; isBound && len(r) == 1 && a.bindings[v] == 1 && a.occurrences[v] == 1+len(a.gets[v])+a.knownCalls(v) {
			for _, c := range a.gets[v] {
				ks, _ := objectGetKeys(c)
				if path, ok := inputPath(r.Concat(ks), out); ok {
					readWhole(out, path)
				}
			}
			for _, c := range a.passed[v] {
				a.followCall(c, []string{inputRoot}, 0, out)
			}
			return false
		}
		if path, ok := reviewPath(r); ok {
			if c, isArg := a.args[t]; isArg && a.followCall(c, path, 0, out) {
				return false
			}
			if _, isBound := a.bound[t]; isBound && len(r) == 2 {
				a.follow(t, path, 0, out, x)
				return false
			}
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
			// A set's element is its key, read whole by any other use of
			// the key's variable; an object's key is not its value.
			element := x.objects[name] || (isVar && a.occurrences[elem] == 1)
			for _, p := range x.paths[name] {
				switch {
				case len(r) <= len(set) || !element || !complete || a.inArray[t]:
					readWhole(out, p)
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
	// args are the call arguments by term, passed the calls each
	// variable is an argument of; funcs the modules' functions by
	// reference, shared by every rule.
	args   map[*ast.Term]callArg
	passed map[ast.Var][]callArg
	// gets are the object.get calls with a constant key on each variable.
	gets  map[ast.Var][]callArg
	funcs map[string][]*ruleVars
	// specs are the functions' copies with constant arguments in place
	// of their parameters (withConstants), shared by every rule.
	specs map[string]*ruleVars
	// messageOnly are the references whose values only shape the
	// messages, read for whether they are there (decisionReadSet).
	messageOnly map[*ast.Term]bool
	rule        *ast.Rule
	// headKey is the key variable of a partial set rule, set its ref.
	headKey ast.Var
	set     ast.Ref
	// objectDoc says headKey is the value of a partial object rule.
	objectDoc bool
}

// maxFollow bounds how many bindings in a chain (obj := input.review.object;
// c := obj.spec.containers[_]; c.image) follow handles before it reads the
// value whole.
const maxFollow = 8

// follow adds what the reference term t, which reads path, reads: path
// itself, or, when t is bound to a variable used only as the head of
// keyed references, the path each of those reads through it.
func (a *ruleVars) follow(t *ast.Term, path []string, depth int, out *engine.ReadSet, x *exports) {
	if a.messageOnly[t] {
		readPresence(out, path)
		return
	}
	v, isBound := a.bound[t]
	if c, isArg := a.args[t]; !isBound && isArg && depth < maxFollow && a.followCall(c, path, depth+1, out) {
		// A keyed use passed to a function of the modules
		// (get_field(review.object.spec)) reads what the function does.
		return
	}
	// The binding itself plus one occurrence per keyed use: any other
	// occurrence uses the value whole (an argument, a value, a
	// comparison, a message) — but for the key of a partial set rule,
	// whose references then read what they use of it.
	exported := 0
	if isBound && x != nil && a.set != nil && v == a.headKey {
		exported = 1
	}
	if !isBound || depth >= maxFollow || a.bindings[v] != 1 || a.occurrences[v] != 1+len(a.keyed[v])+exported+a.knownCalls(v)+len(a.gets[v]) {
		readWhole(out, path)
		return
	}
	if a.occurrences[v] == 1 {
		// Bound and never used: the binding still needs the value to
		// exist (_ = p[k] is "p has a key"), whatever it is.
		readPresence(out, path)
		return
	}
	if exported == 1 {
		name := a.set.String()
		x.paths[name] = append(x.paths[name], path)
		x.refs[name] = a.set
		if a.objectDoc {
			x.objects[name] = true
		}
	}
	a.readUses(v, path, depth, out, x)
}

// readUses adds what the uses of v, whose value is at path, read: each
// keyed reference (followed further when it is bound in turn), each call
// of a function of the modules it is passed to, and each object.get.
func (a *ruleVars) readUses(v ast.Var, path []string, depth int, out *engine.ReadSet, x *exports) {
	for _, use := range a.keyed[v] {
		suffix, complete := keys(use.Value.(ast.Ref)[1:])
		p := append(append([]string(nil), path...), suffix...)
		if !complete {
			readWhole(out, p)
			continue
		}
		a.follow(use, p, depth+1, out, x)
	}
	for _, c := range a.passed[v] {
		a.followCall(c, path, depth+1, out)
	}
	a.readGets(v, path, out)
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
			if string(k) == engine.Present {
				// The marker's own name as a key: reading every entry
				// reads it too.
				path = append(path, engine.Every)
				continue
			}
			path = append(path, string(k))
		case ast.Var, ast.Number:
			path = append(path, engine.Every)
		default:
			return path, false
		}
	}
	return path, true
}

// inputRoot heads a path from input itself rather than from
// input.review: that of a function's parameter when input was passed
// whole. The review's input holds review and parameters only.
const inputRoot = "\x00input"

// fromInput turns a path from input's root into one under input.review:
// ok is false when the path reads nothing of the review (the parameters,
// which key the cache already, or a key input does not have), whole when
// it is input itself or every entry of it.
func fromInput(path []string) (p []string, ok, whole bool) {
	switch {
	case len(path) == 1 || path[1] == engine.Every:
		return nil, true, true
	case path[1] == "review":
		return path[2:], true, false
	}
	return nil, false, false
}

// readWhole adds a read of the whole value at path; the empty path is
// input.review itself, which bounds nothing.
func readWhole(out *engine.ReadSet, path []string) {
	if len(path) > 0 && path[0] == inputRoot {
		p, ok, whole := fromInput(path)
		if !ok {
			return
		}
		if whole {
			out.All = true
			return
		}
		path = p
	}
	p := dropTrailingEvery(path)
	if len(p) == 0 {
		out.All = true
		return
	}
	out.Paths = append(out.Paths, p)
}

// readPresence adds a read of whether a value is at path. input.review
// itself always is.
func readPresence(out *engine.ReadSet, path []string) {
	if len(path) > 0 && path[0] == inputRoot {
		// input, its review and its parameters are always there.
		p, ok, whole := fromInput(path)
		if !ok || whole {
			return
		}
		path = p
	}
	if len(path) == 0 {
		return
	}
	out.Paths = append(out.Paths, append(append([]string(nil), path...), engine.Present))
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

// DecisionReadSet implements engine.DecisionReadSetter.
func (p *Program) DecisionReadSet() engine.ReadSet { return p.decisionReads }
