package mapgen

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/mutation"
)

// emptyList is the CEL of "no patch".
const emptyList = "[]"

// mutationGen writes the JSONPatch expression of one mutator. The
// expression walks the location as Gatekeeper's mutator does: at each node
// it asks whether the field (or keyed element) exists; where it does it
// goes on, where it does not it adds the whole missing subtree at once
// (JSON patch cannot add below a missing parent), and path tests cut
// either branch.
type mutationGen struct {
	path  mutation.Path
	tests map[int]string
	kind  string

	// The leaf: value is the CEL of what Assign and AssignMetadata write;
	// setOp and setValues are ModifySet's.
	value     celValue
	setOp     string
	setValues []celValue
	// setCreate is the list a merge writes where there is none: the
	// values as listed, duplicates kept, as pkg/mutation writes it.
	setCreate celList
}

func (g *mutationGen) leafFrom(in *apis.Mutator) error {
	p := in.Spec.Parameters
	switch in.Kind {
	case apis.KindModifySet:
		g.setOp = p.Operation
		if g.setOp == "" {
			g.setOp = mutation.OpMerge
		}
		var seen []string
		if p.Values != nil {
			for _, v := range p.Values.FromList {
				c := valueOf(v)
				g.setCreate = append(g.setCreate, c)
				// Gatekeeper adds a member once however often it is
				// listed: the CEL's filter would add each listing.
				if r := c.render(); !slices.Contains(seen, r) {
					seen = append(seen, r)
					g.setValues = append(g.setValues, c)
				}
			}
		}
		return nil
	default: // Assign, AssignMetadata
		a := p.Assign
		switch {
		case a.FromMetadata != nil && a.FromMetadata.Field == "namespace":
			// Gatekeeper reads the object's namespace, which the apiserver
			// has set from the request by the time admission runs; a
			// Namespace has none.
			g.value = celLit(`object.metadata.?namespace.orValue("")`)
		case a.FromMetadata != nil:
			g.value = celLit(`object.metadata.?name.orValue("")`)
		default:
			g.value = valueOf(a.Value.Value)
		}
		return nil
	}
}

// patches is the CEL list of JSON patches for nodes depth and on, given
// cur, the CEL of the value holding node depth (known to exist), at JSON
// pointer ptr.
func (g *mutationGen) patches(depth int, cur string, ptr pointer) string {
	n := g.path[depth]
	if n.List {
		return g.listPatches(depth, cur, ptr)
	}
	last := depth == len(g.path)-1
	sel, has := field(cur, n.Field)
	at := ptr.field(n.Field)
	test := g.tests[depth]
	var present, absent string
	switch {
	case last:
		present, absent = g.leaf(sel, at, test)
	default:
		if created, ok := g.create(depth + 1); ok {
			absent = addPatch(at, created.render())
		} else {
			absent = emptyList
		}
		// A field holding null passes path tests as present but is
		// walked as missing, as in pkg/mutation.
		walk := g.patches(depth+1, sel, at)
		if test == "" {
			return choose(has+" && "+sel+" != null", walk, absent)
		}
		present = choose(sel+" != null", walk, absent)
	}
	if test == mutation.MustNotExist {
		present = emptyList
	}
	if test == mutation.MustExist {
		absent = emptyList
	}
	return choose(has, present, absent)
}

// leaf is what the last node gets when its field exists and when not.
func (g *mutationGen) leaf(sel string, at pointer, test string) (present, absent string) {
	switch {
	case g.kind == apis.KindAssignMetadata:
		// AssignMetadata only adds: an existing label or annotation wins.
		return emptyList, addPatch(at, g.value.render())
	case g.setOp == mutation.OpPrune:
		if len(g.setValues) == 0 {
			return emptyList, emptyList
		}
		vals := celList(g.setValues).render()
		d := g.varSuffix()
		return "(" + sel + " != null && " + fmt.Sprintf("%s.exists(e%s, e%s in %s) ? [JSONPatch{op: \"replace\", path: %s, value: %s.filter(e%s, !(e%s in %s))}] : [])",
			sel, d, d, vals, at.render(), sel, d, d, vals), emptyList
	case g.setOp == mutation.OpMerge:
		if len(g.setValues) == 0 {
			return emptyList, emptyList
		}
		vals := celList(g.setValues).render()
		d := g.varSuffix()
		create := addPatch(at, g.setCreate.render())
		// A set holding null is merged into as if missing.
		return choose(sel+" != null", fmt.Sprintf("(%s.exists(v%s, !(v%s in %s)) ? [JSONPatch{op: \"replace\", path: %s, value: %s + %s.filter(v%s, !(v%s in %s))}] : [])",
			vals, d, d, sel, at.render(), sel, vals, d, d, sel), create), create
	default: // Assign
		return addPatch(at, g.value.render()), addPatch(at, g.value.render())
	}
}

func (g *mutationGen) varSuffix() string { return strconv.Itoa(len(g.path)) }

// listPatches handles a list node: cur is the list.
func (g *mutationGen) listPatches(depth int, cur string, ptr pointer) string {
	n := g.path[depth]
	test := g.tests[depth]
	i, e := "i"+strconv.Itoa(depth), "e"+strconv.Itoa(depth)
	match := keyMatch(e, n)
	if depth == len(g.path)-1 {
		// Assign puts its object in place of the first element with the
		// key, or appends it.
		idx := fmt.Sprintf("%s.transformList(%s, %s, %s, %s)", cur, i, e, match, i)
		present := fmt.Sprintf("(%s[%s[0]] == %s ? [] : [JSONPatch{op: \"replace\", path: %s, value: %s}])",
			cur, idx, g.value.render(), ptr.index("string("+idx+"[0])").render(), g.value.render())
		absent := addPatch(ptr.append(), g.value.render())
		if test == mutation.MustNotExist {
			present = emptyList
		}
		if test == mutation.MustExist {
			absent = emptyList
		}
		return choose(idx+".size() > 0", present, absent)
	}
	inner := g.patches(depth+1, e, ptr.index("string("+i+")"))
	if n.Glob {
		// A glob walks every element and never creates one; no element
		// satisfies MustNotExist.
		if test == mutation.MustNotExist || inner == emptyList {
			return emptyList
		}
		return fmt.Sprintf("%s.transformList(%s, %s, %s).flatten()", cur, i, e, inner)
	}
	present := emptyList
	if inner != emptyList {
		present = fmt.Sprintf("%s.transformList(%s, %s, %s, %s).flatten()", cur, i, e, match, inner)
	}
	absent := emptyList
	if created, ok := g.create(depth); ok {
		absent = addPatch(ptr.append(), created.(celList)[0].render())
	}
	if test == mutation.MustNotExist {
		present = emptyList
	}
	if test == mutation.MustExist {
		absent = emptyList
	}
	return choose(fmt.Sprintf("%s.exists(%s, %s)", cur, e, match), present, absent)
}

// create is the value nodes depth and on make from nothing: for a field
// node, the object holding it; for a list node, the list holding the new
// element. ok is false when nothing would be created.
func (g *mutationGen) create(depth int) (celValue, bool) {
	n := g.path[depth]
	last := depth == len(g.path)-1
	test := g.tests[depth]
	if test == mutation.MustExist {
		return nil, false
	}
	if n.List {
		if n.Glob {
			return nil, false
		}
		if last {
			return celList{g.value}, true
		}
		child, ok := g.create(depth + 1)
		if !ok {
			return nil, false
		}
		elem := celMap{keys: []string{n.KeyField}, vals: []celValue{valueOf(keyValue(n))}}
		m := child.(celMap)
		for i, k := range m.keys {
			if k != n.KeyField {
				elem.keys = append(elem.keys, k)
				elem.vals = append(elem.vals, m.vals[i])
			}
		}
		return celList{elem}, true
	}
	var v celValue
	switch {
	case !last:
		child, ok := g.create(depth + 1)
		if !ok {
			return nil, false
		}
		v = child
	case g.setOp == mutation.OpPrune, g.setOp == mutation.OpMerge && len(g.setValues) == 0:
		return nil, false
	case g.setOp == mutation.OpMerge:
		v = g.setCreate
	default:
		v = g.value
	}
	return celMap{keys: []string{n.Field}, vals: []celValue{v}}, true
}

func keyValue(n mutation.Node) any {
	if n.KeyInt {
		v, _ := strconv.ParseInt(n.KeyValue, 10, 64)
		return v
	}
	return n.KeyValue
}

// keyMatch is the CEL that list element e has the node's key.
func keyMatch(e string, n mutation.Node) string {
	sel, has := field(e, n.KeyField)
	return fmt.Sprintf("%s && %s == %s", has, sel, valueOf(keyValue(n)).render())
}

func addPatch(at pointer, value string) string {
	return fmt.Sprintf("[JSONPatch{op: \"add\", path: %s, value: %s}]", at.render(), value)
}

func choose(cond, yes, no string) string {
	if yes == no {
		return yes
	}
	return fmt.Sprintf("(%s ? %s : %s)", cond, yes, no)
}

var identPattern = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// celReserved are CEL's reserved words, which cannot be selected with a
// dot.
var celReserved = []string{"true", "false", "null", "in", "as", "break", "const", "continue", "else", "for", "function", "if", "import", "let", "loop", "package", "namespace", "return", "var", "void", "while"}

// field is the CEL selecting field f of cur and the CEL testing it is
// there.
func field(cur, f string) (sel, has string) {
	if identPattern.MatchString(f) && !slices.Contains(celReserved, f) {
		return cur + "." + f, "has(" + cur + "." + f + ")"
	}
	q := strconv.Quote(f)
	return cur + "[" + q + "]", q + " in " + cur
}

// pointer is a JSON pointer built of literal segments and CEL string
// expressions (list indexes known only at admission).
type pointer struct{ parts []ptrPart }

type ptrPart struct {
	lit  string // escaped literal segment, with its leading '/'
	expr string // or a CEL string expression for a whole segment
}

func (p pointer) with(part ptrPart) pointer {
	return pointer{parts: append(slices.Clone(p.parts), part)}
}

func (p pointer) field(f string) pointer {
	return p.with(ptrPart{lit: "/" + strings.NewReplacer("~", "~0", "/", "~1").Replace(f)})
}

func (p pointer) index(expr string) pointer { return p.with(ptrPart{expr: expr}) }

func (p pointer) append() pointer { return p.with(ptrPart{lit: "/-"}) }

func (p pointer) render() string {
	var out []string
	lit := ""
	for _, part := range p.parts {
		if part.expr == "" {
			lit += part.lit
			continue
		}
		out = append(out, strconv.Quote(lit+"/"))
		lit = ""
		out = append(out, part.expr)
	}
	if lit != "" || len(out) == 0 {
		out = append(out, strconv.Quote(lit))
	}
	return strings.Join(out, " + ")
}

// celValue is a value written as CEL. Map and list elements are wrapped
// in dyn(): the apiserver's CEL refuses literals whose elements differ in
// type.
type celValue interface{ render() string }

type celLit string

func (l celLit) render() string { return string(l) }

type celList []celValue

func (l celList) render() string {
	s := make([]string, len(l))
	for i, v := range l {
		s[i] = "dyn(" + v.render() + ")"
	}
	return "[" + strings.Join(s, ", ") + "]"
}

type celMap struct {
	keys []string
	vals []celValue
}

func (m celMap) render() string {
	s := make([]string, len(m.keys))
	for i, k := range m.keys {
		s[i] = strconv.Quote(k) + ": dyn(" + m.vals[i].render() + ")"
	}
	return "{" + strings.Join(s, ", ") + "}"
}

// valueOf writes a JSON-like value as CEL.
func valueOf(v any) celValue {
	switch x := v.(type) {
	case nil:
		return celLit("null")
	case bool:
		return celLit(strconv.FormatBool(x))
	case string:
		return celLit(strconv.Quote(x))
	case int64:
		return celLit(strconv.FormatInt(x, 10))
	case int:
		return celLit(strconv.Itoa(x))
	case float64:
		s := strconv.FormatFloat(x, 'g', -1, 64)
		if !strings.ContainsAny(s, ".eE") {
			s += ".0"
		}
		return celLit(s)
	case []any:
		l := make(celList, len(x))
		for i, e := range x {
			l[i] = valueOf(e)
		}
		return l
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		m := celMap{keys: keys}
		for _, k := range keys {
			m.vals = append(m.vals, valueOf(x[k]))
		}
		return m
	default:
		return celLit(strconv.Quote(fmt.Sprint(x)))
	}
}
