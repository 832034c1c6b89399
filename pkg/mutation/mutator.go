package mutation

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/match"
	utiljson "k8s.io/apimachinery/pkg/util/json"
)

// ErrExternalDataUnsupported is wrapped by the error for a mutator that
// asks an external data provider for its value.
var ErrExternalDataUnsupported = errors.New("externalData is not supported yet")

// ID names a mutator. Mutators are cluster-scoped and share one group, so
// kind and name identify one.
type ID struct {
	Kind string
	Name string
}

func (id ID) String() string { return id.Kind + "/" + id.Name }

// less orders IDs as Gatekeeper applies mutators: by kind, then name.
func (id ID) less(o ID) bool {
	if id.Kind != o.Kind {
		return id.Kind < o.Kind
	}
	return id.Name < o.Name
}

// servedVersions are the versions of mutations.gatekeeper.sh each kind is
// served at.
var servedVersions = map[string][]string{
	apis.KindAssign:         {"v1", "v1beta1", "v1alpha1"},
	apis.KindAssignMetadata: {"v1", "v1beta1", "v1alpha1"},
	apis.KindModifySet:      {"v1", "v1beta1", "v1alpha1"},
	apis.KindAssignImage:    {"v1alpha1"},
}

// IsMutator reports whether apiVersion and kind name one of the mutator
// kinds at any served version.
func IsMutator(apiVersion, kind string) bool {
	group, _, _ := strings.Cut(apiVersion, "/")
	_, ok := servedVersions[kind]
	return ok && group == apis.MutationsGroup
}

// Path test conditions.
const (
	MustExist    = "MustExist"
	MustNotExist = "MustNotExist"
)

// ModifySet operations.
const (
	OpMerge = "merge"
	OpPrune = "prune"
)

// terminal is what the last node of a location holds, for conflict
// detection: a set (ModifySet), a string (AssignImage) or anything.
type terminal int

const (
	terminalAny terminal = iota
	terminalSet
	terminalString
)

// Mutator is a compiled mutator, ready to apply.
type Mutator struct {
	id       ID
	applyTo  []apis.MutationApplyTo
	matcher  *match.Matcher
	path     Path
	tests    map[int]string // node index → condition
	terminal terminal

	// What the last node gets; one of these per kind.
	value        any    // Assign value
	fromMetadata string // Assign/AssignMetadata fromMetadata.field
	metadataOnly bool   // AssignMetadata: never overwrite
	setOp        string // ModifySet
	setValues    []any
	image        *imageParts // AssignImage
}

// ID names the mutator.
func (m *Mutator) ID() ID { return m.id }

// Path is the mutator's parsed location.
func (m *Mutator) Path() Path { return m.path }

// Decode compiles a mutator document (Assign, AssignMetadata, ModifySet or
// AssignImage) read as JSON-like values.
func Decode(obj map[string]any) (*Mutator, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encoding mutator: %w", err)
	}
	var m apis.Mutator
	if err := utiljson.Unmarshal(b, &m); err != nil {
		kind, _ := obj["kind"].(string)
		return nil, fmt.Errorf("decoding %s: %w", kind, err)
	}
	return Compile(&m)
}

// Compile validates a mutator as Gatekeeper does and prepares it.
func Compile(in *apis.Mutator) (*Mutator, error) {
	m, err := compile(in)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", in.Kind, in.Name, err)
	}
	return m, nil
}

func compile(in *apis.Mutator) (*Mutator, error) {
	versions, ok := servedVersions[in.Kind]
	group, version, _ := strings.Cut(in.APIVersion, "/")
	if !ok || group != apis.MutationsGroup {
		return nil, fmt.Errorf("apiVersion %s kind %s is not a mutator", in.APIVersion, in.Kind)
	}
	if !slices.Contains(versions, version) {
		return nil, fmt.Errorf("apiVersion %s: %s is served at %s/%s", in.APIVersion, in.Kind, apis.MutationsGroup, strings.Join(versions, ", "))
	}
	if in.Name == "" {
		return nil, errors.New("metadata.name is required")
	}
	if len(in.Name) > 63 {
		// Gatekeeper refuses longer names: a mutator it would not run must not pass here.
		return nil, fmt.Errorf("metadata.name is %d characters long; a mutator's name may have at most 63", len(in.Name))
	}
	m := &Mutator{id: ID{Kind: in.Kind, Name: in.Name}, applyTo: in.Spec.ApplyTo}
	var err error
	if m.matcher, err = match.Compile(in.Spec.Match); err != nil {
		return nil, err
	}
	if m.path, err = ParsePath(in.Spec.Location); err != nil {
		return nil, fmt.Errorf("spec.location: %w", err)
	}
	p := &in.Spec.Parameters
	if in.Kind == apis.KindAssignMetadata {
		return m, m.compileAssignMetadata(p)
	}
	if err := checkApplyTo(in.Spec.ApplyTo); err != nil {
		return nil, err
	}
	if m.path[0] == (Node{Field: "metadata"}) {
		return nil, fmt.Errorf("spec.location: %s cannot change metadata (AssignMetadata sets labels and annotations)", in.Kind)
	}
	if m.tests, err = compileTests(m.path, p.PathTests); err != nil {
		return nil, err
	}
	last := m.path[len(m.path)-1]
	switch in.Kind {
	case apis.KindAssign:
		if err := checkKeyNotChanged(m.path); err != nil {
			return nil, err
		}
		return m, m.compileAssign(p, last)
	case apis.KindModifySet:
		if last.List {
			return nil, errors.New("spec.location: the final node of a ModifySet location cannot be a keyed list")
		}
		m.terminal = terminalSet
		switch p.Operation {
		case "", OpMerge:
			m.setOp = OpMerge
		case OpPrune:
			m.setOp = OpPrune
		default:
			return nil, fmt.Errorf("spec.parameters.operation: %q is not merge or prune", p.Operation)
		}
		if p.Values != nil {
			m.setValues = p.Values.FromList
		}
		return m, nil
	default: // AssignImage
		if last.List {
			return nil, errors.New("spec.location: an AssignImage location cannot end in a list")
		}
		if err := checkKeyNotChanged(m.path); err != nil {
			return nil, err
		}
		m.terminal = terminalString
		img, err := compileImage(p.AssignDomain, p.AssignPath, p.AssignTag)
		if err != nil {
			return nil, fmt.Errorf("spec.parameters: %w", err)
		}
		m.image = img
		return m, nil
	}
}

func (m *Mutator) compileAssign(p *apis.MutatorParameters, last Node) error {
	if err := m.compileSource(p.Assign); err != nil {
		return err
	}
	if !last.List {
		return nil
	}
	if m.fromMetadata != "" {
		return errors.New("spec.parameters.assign.fromMetadata: a metadata field cannot be assigned to a list element")
	}
	if last.Glob {
		return errors.New("spec.location: cannot assign to a globbed list element; name the element with its key")
	}
	obj, ok := m.value.(map[string]any)
	if !ok {
		return fmt.Errorf("spec.parameters.assign.value: only objects can be assigned to a keyed list element, got %s", typeName(m.value))
	}
	if obj[last.KeyField] != last.keyValue() {
		return fmt.Errorf("spec.parameters.assign.value: the object's %s must be %#v, the location's list key", last.KeyField, last.keyValue())
	}
	return nil
}

// compileSource reads parameters.assign: exactly one of value,
// fromMetadata and externalData.
func (m *Mutator) compileSource(a *apis.AssignField) error {
	if a == nil {
		return errors.New("spec.parameters.assign is required")
	}
	if a.ExternalData != nil {
		return fmt.Errorf("spec.parameters.assign.externalData: %w", ErrExternalDataUnsupported)
	}
	if (a.Value != nil) == (a.FromMetadata != nil) {
		return errors.New("spec.parameters.assign: exactly one of value and fromMetadata must be set")
	}
	if a.FromMetadata != nil {
		switch a.FromMetadata.Field {
		case "namespace", "name":
			m.fromMetadata = a.FromMetadata.Field
		default:
			return fmt.Errorf("spec.parameters.assign.fromMetadata.field: %q is not namespace or name", a.FromMetadata.Field)
		}
		return nil
	}
	m.value = a.Value.Value
	return nil
}

func (m *Mutator) compileAssignMetadata(p *apis.MutatorParameters) error {
	m.metadataOnly = true
	ok := len(m.path) == 3 && !m.path[0].List && !m.path[1].List && !m.path[2].List &&
		m.path[0].Field == "metadata" && (m.path[1].Field == "labels" || m.path[1].Field == "annotations")
	if !ok {
		return fmt.Errorf("spec.location: %q must be metadata.labels.<key> or metadata.annotations.<key>", m.path)
	}
	if err := m.compileSource(p.Assign); err != nil {
		return err
	}
	if m.fromMetadata == "" {
		if _, ok := m.value.(string); !ok {
			return fmt.Errorf("spec.parameters.assign.value: labels and annotations are strings, got %s", typeName(m.value))
		}
	}
	return nil
}

// checkKeyNotChanged refuses a location that ends at the key field of the
// list element it selects: changing the key would lose the element.
func checkKeyNotChanged(p Path) error {
	if len(p) < 2 {
		return nil
	}
	last, prev := p[len(p)-1], p[len(p)-2]
	if !last.List && prev.List && last.Field == prev.KeyField {
		return fmt.Errorf("spec.location: %q would change the list key field %s", p, prev.KeyField)
	}
	return nil
}

func checkApplyTo(applyTo []apis.MutationApplyTo) error {
	if len(applyTo) == 0 {
		return errors.New("spec.applyTo is required: it names the group, version and kind the location is a path of")
	}
	for i, a := range applyTo {
		if len(a.Groups) == 0 || len(a.Versions) == 0 || len(a.Kinds) == 0 {
			return fmt.Errorf("spec.applyTo[%d]: groups, versions and kinds must each list at least one entry", i)
		}
		for _, s := range slices.Concat(a.Groups, a.Versions, a.Kinds) {
			if strings.Contains(s, "*") {
				return fmt.Errorf("spec.applyTo[%d]: %q: applyTo does not accept globs", i, s)
			}
		}
		for _, op := range a.Operations {
			switch op {
			case "CREATE", "UPDATE", "*":
			default:
				return fmt.Errorf("spec.applyTo[%d].operations: %q is not CREATE, UPDATE or *", i, op)
			}
		}
	}
	return nil
}

func compileTests(loc Path, tests []apis.PathTest) (map[int]string, error) {
	if len(tests) == 0 {
		return nil, nil
	}
	out := map[int]string{}
	for i, t := range tests {
		sub, err := ParsePath(t.SubPath)
		if err != nil {
			return nil, fmt.Errorf("spec.parameters.pathTests[%d].subPath: %w", i, err)
		}
		if !loc.hasPrefix(sub) {
			return nil, fmt.Errorf("spec.parameters.pathTests[%d].subPath: %q is not a prefix of the location %q", i, sub, loc)
		}
		switch t.Condition {
		case MustExist, MustNotExist:
		default:
			return nil, fmt.Errorf("spec.parameters.pathTests[%d].condition: %q is not MustExist or MustNotExist", i, t.Condition)
		}
		d := len(sub) - 1
		if prev, ok := out[d]; ok && prev != t.Condition {
			return nil, fmt.Errorf("spec.parameters.pathTests[%d]: %q is marked both MustExist and MustNotExist", i, sub)
		}
		out[d] = t.Condition
	}
	// A node cannot be required under a parent that must not exist.
	for d, c := range out {
		if c != MustExist {
			continue
		}
		for pd, pc := range out {
			if pd < d && pc == MustNotExist {
				return nil, fmt.Errorf("spec.parameters.pathTests: %q must exist but its parent %q must not", loc[:d+1], loc[:pd+1])
			}
		}
	}
	return out, nil
}

func (m *Mutator) existsOkay(depth int) bool { return m.tests[depth] != MustNotExist }
func (m *Mutator) missingOkay(depth int) bool {
	return m.tests[depth] != MustExist
}

// appliesTo checks applyTo: exact group, version and kind, and operation.
func (m *Mutator) appliesTo(group, version, kind, operation string) bool {
	if m.metadataOnly {
		return true
	}
	for _, a := range m.applyTo {
		if slices.Contains(a.Groups, group) && slices.Contains(a.Versions, version) && slices.Contains(a.Kinds, kind) &&
			(len(a.Operations) == 0 || slices.Contains(a.Operations, "*") || operation == "" || slices.Contains(a.Operations, operation)) {
			return true
		}
	}
	return false
}

func typeName(v any) string {
	switch v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	default:
		return "a number"
	}
}

// AssignImage's rules for each part keep the result parseable the same way
// the next time, so that the mutation converges: no part may contain the
// separators of another.
var (
	domainPattern = regexp.MustCompile(`(^\w[\w\-_]*\.[\w\-_\.]*[\w](:\d+)?$)|(^localhost(:\d+)?$)`)
	pathPattern   = regexp.MustCompile(`^[a-z0-9]+(?:(?:(?:[._/]|__|[-]*)[a-z0-9]+)+)?`)
	tagPattern    = regexp.MustCompile(`(^:[\w][\w.-]{0,127}$)|(^@[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9A-Fa-f]{32,}$)`)
)

type imageParts struct{ domain, path, tag string }

func compileImage(domain, path, tag string) (*imageParts, error) {
	if domain == "" && path == "" && tag == "" {
		return nil, errors.New("at least one of assignDomain, assignPath and assignTag must be set")
	}
	if domain != "" && !domainPattern.MatchString(domain) {
		return nil, fmt.Errorf("assignDomain %q is not a registry domain (like registry.example.com or localhost:5000)", domain)
	}
	if path != "" && pathPattern.FindString(path) != path {
		return nil, fmt.Errorf("assignPath %q is not an image path (lowercase components separated by /, ., _, __ or dashes)", path)
	}
	if tag != "" && !tagPattern.MatchString(tag) {
		return nil, fmt.Errorf("assignTag %q must be :<tag> or @<algorithm>:<digest>", tag)
	}
	if domain == "" {
		if d, _ := splitDomain(path); d != "" {
			return nil, fmt.Errorf("assignPath %q starts with what reads as a domain: set assignDomain too", path)
		}
	}
	return &imageParts{domain: domain, path: path, tag: tag}, nil
}

// splitDomain takes the registry off an image reference: the part before
// the first '/' when it has a '.' or ':' or is localhost.
func splitDomain(ref string) (domain, rest string) {
	i := strings.IndexByte(ref, '/')
	if i < 0 || (!strings.ContainsAny(ref[:i], ".:") && ref[:i] != "localhost") {
		return "", ref
	}
	return ref[:i], ref[i+1:]
}

// apply replaces the set parts of an image reference.
func (p *imageParts) apply(ref string) string {
	domain, rest := splitDomain(ref)
	path, tag := rest, ""
	if i := strings.IndexAny(rest, ":@"); i >= 0 {
		path, tag = rest[:i], rest[i:]
	}
	if p.domain != "" {
		domain = p.domain
	}
	if p.path != "" {
		path = p.path
	}
	if p.tag != "" {
		tag = p.tag
	}
	if domain != "" {
		domain += "/"
	}
	return domain + path + tag
}
