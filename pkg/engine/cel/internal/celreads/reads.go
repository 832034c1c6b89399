// Package celreads finds what a CEL template's expressions read of a
// review, for the evaluation cache: the paths of object, oldObject,
// request and namespaceObject its outcome can depend on.
package celreads

import (
	"slices"
	"strings"

	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"
	plugincel "k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/cel/environment"

	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/engine/cel/internal/celcheck"
)

// requestFields maps the fields of the CEL request to the review fields
// NewRequest builds them from.
var requestFields = map[string][]string{
	"uid": {"uid"}, "name": {"name"}, "namespace": {"namespace"}, "operation": {"operation"},
	"userInfo": {"userInfo"}, "dryRun": {"dryRun"}, "options": {"options"},
	"kind": {"kind"}, "requestKind": {"kind"},
	"resource": {"resource"}, "requestResource": {"resource"},
	"subResource": {"subResource"}, "requestSubResource": {"subResource"},
}

// celTypeIdents are identifiers that name CEL types (type(x) == string): they
// read nothing.
var celTypeIdents = map[string]bool{
	"bool": true, "int": true, "uint": true, "double": true, "string": true, "bytes": true,
	"list": true, "map": true, "null_type": true, "type": true, "dyn": true,
}

// Variable is a variable of a template: its name and its expression.
type Variable struct {
	Name, Expression string
}

// Validation is a validation's expression and message expression ("" for
// none).
type Validation struct {
	Expression, MessageExpression string
}

// Template is what the analysis reads of a template: its variables in
// declaration order, match conditions and validations.
type Template struct {
	// Params names a variable whose value reads nothing of the review (the
	// constraint's parameters).
	Params string
	// Lazy is a variable defined outside Variables, analysed where it is
	// first used, so that a template that does not use it does not read
	// what it reads.
	Lazy            Variable
	Variables       []Variable
	MatchConditions []string
	Validations     []Validation
}

// Of finds what a template's expressions read of the review, by following
// every value that comes from object, oldObject, request or
// namespaceObject through the expressions (see analysis). Variables are
// expressions of the template, so their reads are counted where they are
// defined and their values followed where they are used. Anything it
// cannot follow (an unknown name, a root rebound by a comprehension,
// variables with a computed name) is unbounded. Without messages the
// message expressions are left out. asts are the expressions already
// parsed, by text; others are parsed here.
func Of(t Template, asts map[string]*celast.AST, messages bool) engine.ReadSet {
	an := &analysis{vars: map[string]*val{}}
	if t.Params != "" {
		an.vars[t.Params] = nil
	}
	parse := func(text string) *celast.AST {
		if a, ok := asts[text]; ok {
			return a
		}
		env, err := celcheck.BaseEnv().Env(environment.StoredExpressions)
		if err != nil {
			return nil
		}
		parsed, iss := env.Parse(text)
		if iss != nil && iss.Err() != nil {
			return nil
		}
		return parsed.NativeRep()
	}
	// define analyses a variable's expression: its reads count, its value
	// is followed where the variable is used.
	define := func(name, text string) bool {
		a := parse(text)
		if a == nil {
			return false
		}
		an.ast = a
		an.vars[name] = an.eval(a.Expr(), nil)
		return !an.unbounded
	}
	// use analyses an expression whose value is the template's answer.
	use := func(text string) bool {
		a := parse(text)
		if a == nil {
			return false
		}
		an.ast = a
		an.consume(an.eval(a.Expr(), nil))
		return !an.unbounded
	}
	an.lazy = func(name string) (*val, bool) {
		if t.Lazy.Name == "" || name != t.Lazy.Name {
			return nil, false
		}
		saved := an.ast
		defer func() { an.ast = saved }()
		if !define(t.Lazy.Name, t.Lazy.Expression) {
			an.unbounded = true
		}
		return an.vars[t.Lazy.Name], true
	}
	for _, v := range t.Variables {
		if !define(v.Name, v.Expression) {
			return engine.ReadSet{All: true}
		}
	}
	for _, m := range t.MatchConditions {
		if !use(m) {
			return engine.ReadSet{All: true}
		}
	}
	for _, v := range t.Validations {
		if !use(v.Expression) {
			return engine.ReadSet{All: true}
		}
		if messages && v.MessageExpression != "" && !use(v.MessageExpression) {
			return engine.ReadSet{All: true}
		}
	}
	return an.readSet()
}

// A val describes what an expression's value may be, as far as it comes
// from the review; nil is a value the reads already recorded decide (a
// literal, a parameter, a boolean computed from reads). It may be any of:
//   - the value at one of refs (a path in the review's layout, through
//     engine.Every for an element of a list), read only as far as it is
//     used;
//   - a list built by the expression whose length and order the recorded
//     reads decide and whose elements are described by elems;
//   - a map built by the expression with constant keys, whose values are
//     described by fields;
//   - request or variables themselves (root), whose fields are followed;
//   - one of consts, exactly (the variable of a comprehension over a list
//     of string literals): an index by it reads only those keys.
type val struct {
	refs   [][]string
	elems  *val
	fields map[string]*val
	root   string
	consts []string
}

// analysis records the reads of a template's expressions. Strong reads
// are read whole; a weak read needs only whether the value is there, null
// or a list and how long, which any strong read at, above or under the
// same path decides (a digest under a path stops at its first non-object
// and digests that whole, and one through Every digests the list's length).
type analysis struct {
	strong, weak [][]string
	vars         map[string]*val
	// lazy defines a variable analysed only once used.
	lazy      func(name string) (*val, bool)
	ast       *celast.AST
	unbounded bool
}

// scope binds comprehension variables.
type scope struct {
	name string
	v    *val
	up   *scope
}

func (s *scope) lookup(name string) (*val, bool) {
	for ; s != nil; s = s.up {
		if s.name == name {
			return s.v, true
		}
	}
	return nil, false
}

// mixedRoot is the root of a value that may be request or variables or
// something else.
const mixedRoot = "?"

// maxFixpoint bounds the passes over a comprehension's step looking for
// every value its accumulator may take; past it the comprehension is read
// whole.
const maxFixpoint = 8

func isRoot(name string) bool {
	switch name {
	case plugincel.ObjectVarName, plugincel.OldObjectVarName, plugincel.RequestVarName,
		plugincel.NamespaceVarName, plugincel.VariableVarName, plugincel.ParamsVarName:
		return true
	}
	return false
}

func (an *analysis) eval(e celast.Expr, sc *scope) *val {
	if an.unbounded {
		return nil
	}
	switch e.Kind() {
	case celast.LiteralKind:
		return nil
	case celast.IdentKind:
		return an.ident(e.AsIdent(), sc)
	case celast.SelectKind:
		sel := e.AsSelect()
		v := an.field(an.eval(sel.Operand(), sc), sel.FieldName())
		if sel.IsTestOnly() {
			an.weakRead(v)
			return nil
		}
		return v
	case celast.ListKind:
		var out *val
		for _, el := range e.AsList().Elements() {
			out = union(out, an.eval(el, sc))
		}
		return mk(&val{elems: out})
	case celast.MapKind:
		fields := map[string]*val{}
		constant := true
		var vals []*val
		for _, en := range e.AsMap().Entries() {
			me := en.AsMapEntry()
			v := an.eval(me.Value(), sc)
			k, ok := stringLiteral(me.Key())
			if !ok {
				constant = false
				an.consume(an.eval(me.Key(), sc))
			}
			vals = append(vals, v)
			fields[k] = union(fields[k], v)
		}
		if !constant {
			for _, v := range vals {
				an.consume(v)
			}
			return nil
		}
		return mk(&val{fields: fields})
	case celast.StructKind:
		for _, f := range e.AsStruct().Fields() {
			an.consume(an.eval(f.AsStructField().Value(), sc))
		}
		return nil
	case celast.ComprehensionKind:
		return an.comprehension(e.AsComprehension(), sc)
	case celast.CallKind:
		return an.call(e, sc)
	}
	an.unbounded = true
	return nil
}

func (an *analysis) ident(name string, sc *scope) *val {
	if v, ok := sc.lookup(name); ok {
		return v
	}
	switch name {
	case plugincel.ObjectVarName, plugincel.OldObjectVarName:
		return &val{refs: [][]string{{name}}}
	case plugincel.RequestVarName, plugincel.VariableVarName:
		return &val{root: name}
	case plugincel.NamespaceVarName:
		// NewRequest builds it from the whole Namespace object (which may
		// fill fields from others), or from the namespace's name alone,
		// and not for a Namespace itself.
		an.strong = append(an.strong, []string{"namespaceObject"}, []string{"namespace"}, []string{"kind"})
		return nil
	case plugincel.ParamsVarName:
		return nil
	}
	if !celTypeIdents[name] {
		an.unbounded = true
	}
	return nil
}

// field is v.name (or v.?name, v["name"]).
func (an *analysis) field(v *val, name string) *val {
	if v == nil {
		return nil
	}
	switch v.root {
	case plugincel.RequestVarName:
		f, ok := requestFields[name]
		if !ok {
			an.unbounded = true
			return nil
		}
		an.weak = append(an.weak, f)
		return &val{refs: [][]string{f}}
	case plugincel.VariableVarName:
		x, ok := an.vars[name]
		if !ok && an.lazy != nil {
			x, ok = an.lazy(name)
		}
		if !ok {
			// Not defined yet, or not at all.
			an.unbounded = true
		}
		return x
	case "":
	default:
		an.unbounded = true
		return nil
	}
	out := &val{}
	if name == engine.Present {
		// The marker's own name as a field: reading every entry reads
		// it too.
		name = engine.Every
	}
	for _, r := range v.refs {
		p := appendPath(r, name)
		// Selecting can fail (no such key, not an object) whether or not
		// the value is used.
		an.weak = append(an.weak, p)
		out.refs = append(out.refs, p)
	}
	out = union(out, v.fields[name])
	// Selecting on a list built here is an error that does not depend on
	// its elements.
	return mk(out)
}

// element is v[k] for a key the analysis does not know: any element of a
// list, any value of a map.
func (an *analysis) element(v *val) *val {
	out, ok := an.everyElement(v)
	if !ok {
		return nil
	}
	out = union(out, v.elems)
	for _, f := range v.fields {
		out = union(out, f)
	}
	return mk(out)
}

// everyElement is the review paths of v's elements (v's paths followed by
// Every). Indexing or iterating can fail or stop whether or not an element
// is used, which takes the keys or the length: each path is also a weak
// read. False when v is unbounded.
func (an *analysis) everyElement(v *val) (*val, bool) {
	if v == nil {
		return nil, false
	}
	if v.root != "" {
		an.unbounded = true
		return nil, false
	}
	out := &val{}
	for _, r := range v.refs {
		p := appendPath(r, engine.Every)
		an.weak = append(an.weak, p)
		out.refs = append(out.refs, p)
	}
	return out, true
}

// iterated is what a comprehension over v binds its variable to: an
// element of a list or a key of a map (a key is digested with its entry
// through Every, and keys of maps built here are constants). Iterating
// reads the length of what it iterates.
func (an *analysis) iterated(v *val) *val {
	out, ok := an.everyElement(v)
	if !ok {
		return nil
	}
	return mk(union(out, v.elems))
}

func (an *analysis) call(e celast.Expr, sc *scope) *val {
	call := e.AsCall()
	args := call.Args()
	switch fn := call.FunctionName(); {
	case fn == operators.Conditional && len(args) == 3:
		an.consume(an.eval(args[0], sc))
		return union(an.eval(args[1], sc), an.eval(args[2], sc))
	case (fn == operators.Equals || fn == operators.NotEquals) && len(args) == 2:
		// Comparing with null needs only whether the value is null.
		switch {
		case isNull(args[1]):
			an.weakRead(an.eval(args[0], sc))
			return nil
		case isNull(args[0]):
			an.weakRead(an.eval(args[1], sc))
			return nil
		}
	case (fn == operators.OptSelect || fn == operators.Index || fn == operators.OptIndex) && len(args) == 2:
		base := an.eval(args[0], sc)
		if k, ok := stringLiteral(args[1]); ok {
			return an.field(base, k)
		}
		key := an.eval(args[1], sc)
		if ks, ok := key.exactConsts(); ok {
			var out *val
			for _, k := range ks {
				out = union(out, an.field(base, k))
			}
			return out
		}
		an.consume(key)
		return an.element(base)
	case fn == operators.Add && len(args) == 2 && !scalarType(an.ast.GetType(e.ID())) && !scalarLiteral(args[0]) && !scalarLiteral(args[1]):
		// List concatenation: a list of the operands' elements, whose
		// length is theirs. (For any other operands iterating the result
		// is an error and reading its elements reads the operands whole.)
		l, r := an.eval(args[0], sc), an.eval(args[1], sc)
		for _, v := range []*val{l, r} {
			if v != nil && v.root != "" {
				an.unbounded = true
				return nil
			}
			if v != nil {
				for _, p := range v.refs {
					an.weak = append(an.weak, appendPath(p, engine.Every))
				}
			}
		}
		return mk(&val{elems: union(an.element(dropFields(l)), an.element(dropFields(r)))})
	case call.IsMemberFunction() && len(args) <= 1:
		switch {
		case (fn == "orValue" || fn == "or") && len(args) == 1:
			return union(an.eval(call.Target(), sc), an.eval(args[0], sc))
		case fn == "value" && len(args) == 0:
			return an.eval(call.Target(), sc)
		case fn == "hasValue" && len(args) == 0:
			an.weakRead(an.eval(call.Target(), sc))
			return nil
		case fn == "size" && len(args) == 0:
			an.sizeRead(an.eval(call.Target(), sc))
			return nil
		}
	case fn == "dyn" && !call.IsMemberFunction() && len(args) == 1:
		return an.eval(args[0], sc)
	case fn == "size" && !call.IsMemberFunction() && len(args) == 1:
		an.sizeRead(an.eval(args[0], sc))
		return nil
	}
	// Any other function reads its operands whole.
	if call.IsMemberFunction() {
		an.consume(an.eval(call.Target(), sc))
	}
	for _, a := range args {
		an.consume(an.eval(a, sc))
	}
	return nil
}

// dropFields leaves out a built map, which a list concatenation cannot
// take (the result is an error whatever its values).
func dropFields(v *val) *val {
	if v == nil || v.fields == nil {
		return v
	}
	return mk(&val{refs: v.refs, elems: v.elems, root: v.root})
}

// comprehension follows the iteration variable of a one-variable
// comprehension (all, exists, exists_one, map, filter) into what it reads
// of each element, and the accumulator through every value the loop step
// may give it. Anything else reads its range whole.
func (an *analysis) comprehension(c celast.ComprehensionExpr, sc *scope) *val {
	for _, v := range []string{c.IterVar(), c.IterVar2(), c.AccuVar()} {
		if isRoot(v) {
			an.unbounded = true
			return nil
		}
	}
	rng := an.eval(c.IterRange(), sc)
	if !c.HasIterVar2() {
		elem := an.iterated(rng)
		if strs, ok := stringLiterals(c.IterRange()); ok {
			elem = &val{consts: strs}
		}
		acc := an.eval(c.AccuInit(), sc)
		for range maxFixpoint {
			inner := &scope{name: c.AccuVar(), v: acc, up: &scope{name: c.IterVar(), v: elem, up: sc}}
			an.consume(an.eval(c.LoopCondition(), inner))
			next := union(acc, an.eval(c.LoopStep(), inner))
			if an.unbounded {
				return nil
			}
			if next.key() == acc.key() {
				return an.eval(c.Result(), &scope{name: c.AccuVar(), v: acc, up: sc})
			}
			acc = next
		}
	}
	// Every variable then holds values the recorded reads decide.
	an.consume(rng)
	inner := &scope{name: c.IterVar(), up: sc}
	if c.HasIterVar2() {
		inner = &scope{name: c.IterVar2(), up: inner}
	}
	an.consume(an.eval(c.AccuInit(), inner))
	inner = &scope{name: c.AccuVar(), up: inner}
	an.consume(an.eval(c.LoopCondition(), inner))
	an.consume(an.eval(c.LoopStep(), inner))
	return an.eval(c.Result(), &scope{name: c.AccuVar(), up: sc})
}

// consume records that v is read whole.
func (an *analysis) consume(v *val) {
	if v == nil {
		return
	}
	if v.root != "" {
		an.unbounded = true
		return
	}
	an.strong = append(an.strong, v.refs...)
	an.consume(v.elems)
	for _, f := range v.fields {
		an.consume(f)
	}
}

// weakRead records that only whether v is there (or null) is read. Values
// built here always are.
func (an *analysis) weakRead(v *val) {
	if v == nil {
		return
	}
	if v.root != "" {
		an.unbounded = true
		return
	}
	an.weak = append(an.weak, v.refs...)
}

// sizeRead records that v's size is read: the length of a list, the keys of
// a map, a string whole, as a digest through Every takes them.
func (an *analysis) sizeRead(v *val) {
	if v == nil {
		return
	}
	if v.root != "" {
		an.unbounded = true
		return
	}
	for _, p := range v.refs {
		an.weak = append(an.weak, appendPath(p, engine.Every))
	}
}

// readSet is the strong reads and every weak read that no other read at,
// above or under the same path decides (deeper ones first, as they then
// decide their parents), without paths under another.
func (an *analysis) readSet() engine.ReadSet {
	paths := slices.Clone(an.strong)
	weak := slices.Clone(an.weak)
	slices.SortStableFunc(weak, func(a, b []string) int { return len(b) - len(a) })
	for _, w := range weak {
		if !slices.ContainsFunc(paths, func(s []string) bool { return pathHasPrefix(w, s) || pathHasPrefix(s, w) }) {
			paths = append(paths, w)
		}
	}
	slices.SortFunc(paths, slices.Compare[[]string])
	var out engine.ReadSet
	for _, p := range paths {
		if n := len(out.Paths); n > 0 && pathHasPrefix(p, out.Paths[n-1]) {
			continue
		}
		out.Paths = append(out.Paths, p)
	}
	return out
}

func pathHasPrefix(p, prefix []string) bool {
	return len(p) >= len(prefix) && slices.Equal(p[:len(prefix)], prefix)
}

func appendPath(p []string, k string) []string {
	return append(slices.Clip(p), k)
}

// union is a value that may be either. Constants stay exact only in a
// union of constants.
func union(a, b *val) *val {
	if a == nil {
		return b.inexact()
	}
	if b == nil {
		return a.inexact()
	}
	if ka, ok := a.exactConsts(); ok {
		if kb, ok := b.exactConsts(); ok {
			ks := slices.Concat(ka, kb)
			slices.Sort(ks)
			return &val{consts: slices.Compact(ks)}
		}
	}
	a, b = a.inexact(), b.inexact()
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	if a.root != "" || b.root != "" {
		if a.key() == b.key() {
			return a
		}
		// request or variables mixed with another value: nothing follows
		// it (see mixedRoot).
		return &val{root: mixedRoot}
	}
	out := &val{}
	seen := map[string]bool{}
	for _, r := range append(slices.Clip(a.refs), b.refs...) {
		k := strings.Join(r, "\x00")
		if !seen[k] {
			seen[k] = true
			out.refs = append(out.refs, r)
		}
	}
	out.elems = union(a.elems, b.elems)
	if a.fields != nil || b.fields != nil {
		out.fields = map[string]*val{}
		for k, f := range a.fields {
			out.fields[k] = f
		}
		for k, f := range b.fields {
			out.fields[k] = union(out.fields[k], f)
		}
	}
	return mk(out)
}

// exactConsts are the strings v is exactly one of.
func (v *val) exactConsts() ([]string, bool) {
	if v == nil || len(v.consts) == 0 || v.root != "" || len(v.refs) > 0 || v.elems != nil || v.fields != nil {
		return nil, false
	}
	return v.consts, true
}

// inexact is v without its constants: what it says beyond them.
func (v *val) inexact() *val {
	if v == nil || len(v.consts) == 0 {
		return v
	}
	return mk(&val{refs: v.refs, elems: v.elems, fields: v.fields, root: v.root})
}

// mk is v, or nil when v describes nothing from the review.
func mk(v *val) *val {
	if v == nil || v.root != "" || len(v.refs) > 0 || v.elems != nil || len(v.consts) > 0 {
		return v
	}
	for _, f := range v.fields {
		if f != nil {
			return v
		}
	}
	return nil
}

// key identifies what v describes, to tell when a fixpoint is reached.
func (v *val) key() string {
	if v == nil {
		return ""
	}
	var refs []string
	for _, r := range v.refs {
		refs = append(refs, strings.Join(r, "\x00"))
	}
	slices.Sort(refs)
	var fields []string
	for k, f := range v.fields {
		fields = append(fields, k+"\x01"+f.key())
	}
	slices.Sort(fields)
	return "(" + v.root + "|" + strings.Join(v.consts, "\x04") + "|" + strings.Join(refs, "\x02") + "|[" + v.elems.key() + "]|{" + strings.Join(fields, "\x03") + "})"
}

func isNull(e celast.Expr) bool {
	if e.Kind() != celast.LiteralKind {
		return false
	}
	_, ok := e.AsLiteral().(types.Null)
	return ok
}

// stringLiterals are the elements of a list literal of string literals.
func stringLiterals(e celast.Expr) ([]string, bool) {
	if e.Kind() != celast.ListKind || len(e.AsList().OptionalIndices()) > 0 {
		return nil, false
	}
	var out []string
	for _, el := range e.AsList().Elements() {
		s, ok := stringLiteral(el)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, len(out) > 0
}

func stringLiteral(e celast.Expr) (string, bool) {
	if e.Kind() != celast.LiteralKind {
		return "", false
	}
	s, ok := e.AsLiteral().(types.String)
	return string(s), ok
}

// scalarLiteral is a literal whose + is not a list's (unchecked
// expressions have no types to tell).
func scalarLiteral(e celast.Expr) bool {
	if e.Kind() != celast.LiteralKind {
		return false
	}
	_, isNull := e.AsLiteral().(types.Null)
	return !isNull
}

// scalarType reports a checked type whose + is arithmetic or string or
// bytes concatenation, not a list's.
func scalarType(t *types.Type) bool {
	switch t.Kind() {
	case types.IntKind, types.UintKind, types.DoubleKind, types.StringKind, types.BytesKind,
		types.DurationKind, types.TimestampKind:
		return true
	}
	return false
}
