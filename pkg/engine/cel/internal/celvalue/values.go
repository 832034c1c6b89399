// Package celvalue converts a review's objects (JSON-form Go values) to CEL
// values that convert each map and list once and keep the converted
// fields, for the CEL driver (pkg/engine/cel).
package celvalue

import (
	"fmt"
	"reflect"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
)

// The apiserver binds an unstructured object as the CEL adapter's view of
// its map[string]any: every field access converts the field's Go value to
// a new CEL value, so `c.resources.limits.cpu` allocates three wrappers
// each time it is read, in each expression of each template. A review's
// object is read by dozens of templates; here each map and list of it is
// wrapped once per review and its converted fields are kept (as the
// apiserver's own schemaless struct values keep theirs). The values behave
// as the adapter's: same type, equality, sizes (and so runtime cost),
// lookups and iteration; only conversions are saved.

// Wrap converts a JSON-form Go value to CEL, keeping maps and lists
// lazily converted and memoised. The value is used by one goroutine.
func Wrap(v any) ref.Val {
	switch t := v.(type) {
	case map[string]any:
		return &objectMap{m: t}
	case []any:
		return &objectList{s: t}
	}
	return types.DefaultTypeAdapter.NativeToValue(v)
}

// Frozen converts v completely, so that the result is never written
// again and can be read by several goroutines (constraint parameters).
func Frozen(v any) ref.Val {
	val := Wrap(v)
	freeze(val)
	return val
}

func freeze(v ref.Val) {
	switch t := v.(type) {
	case *objectMap:
		for k := range t.m {
			val, _ := t.Find(types.String(k))
			freeze(val)
		}
	case *objectList:
		for i := range t.s {
			freeze(t.elem(i))
		}
	}
}

// objectMap is a map[string]any as a CEL map. A value is used by one
// goroutine unless frozen.
type objectMap struct {
	m     map[string]any
	cache map[string]ref.Val
}

var (
	_ traits.Mapper   = (*objectMap)(nil)
	_ traits.Foldable = (*objectMap)(nil)
	_ traits.Zeroer   = (*objectMap)(nil)
)

func (o *objectMap) native() ref.Val { return types.DefaultTypeAdapter.NativeToValue(o.m) }

// Find implements traits.Mapper: only string keys are found, as in the
// adapter's map[string]any view.
func (o *objectMap) Find(key ref.Val) (ref.Val, bool) {
	k, ok := key.(types.String)
	if !ok {
		return nil, false
	}
	if v, ok := o.cache[string(k)]; ok {
		return v, true
	}
	raw, ok := o.m[string(k)]
	if !ok {
		return nil, false
	}
	v := Wrap(raw)
	if o.cache == nil {
		o.cache = make(map[string]ref.Val, len(o.m))
	}
	o.cache[string(k)] = v
	return v, true
}

// Get implements traits.Indexer.
func (o *objectMap) Get(key ref.Val) ref.Val {
	v, found := o.Find(key)
	if !found {
		return types.ValOrErr(v, "no such key: %v", key)
	}
	return v
}

// Contains implements traits.Container.
func (o *objectMap) Contains(key ref.Val) ref.Val {
	_, found := o.Find(key)
	return types.Bool(found)
}

// Size implements traits.Sizer.
func (o *objectMap) Size() ref.Val { return types.Int(len(o.m)) }

// IsZeroValue implements traits.Zeroer.
func (o *objectMap) IsZeroValue() bool { return len(o.m) == 0 }

// Iterator implements traits.Iterable: the keys, as the adapter's map.
func (o *objectMap) Iterator() traits.Iterator { return o.native().(traits.Iterable).Iterator() }

// Fold implements traits.Foldable with the memoised values.
func (o *objectMap) Fold(f traits.Folder) {
	for k := range o.m {
		v, _ := o.Find(types.String(k))
		if !f.FoldEntry(k, v) {
			break
		}
	}
}

// Equal implements ref.Val as the adapter's map does.
func (o *objectMap) Equal(other ref.Val) ref.Val {
	om, ok := other.(traits.Mapper)
	if !ok {
		return types.False
	}
	if types.Int(len(o.m)) != om.Size() {
		return types.False
	}
	for k := range o.m {
		this, _ := o.Find(types.String(k))
		that, found := om.Find(types.String(k))
		if !found || types.Equal(this, that) == types.False {
			return types.False
		}
	}
	return types.True
}

// ConvertToNative implements ref.Val.
func (o *objectMap) ConvertToNative(t reflect.Type) (any, error) {
	return o.native().ConvertToNative(t)
}

// ConvertToType implements ref.Val.
func (o *objectMap) ConvertToType(t ref.Type) ref.Val { return convertToType(o, types.MapType, t) }

// Type implements ref.Val.
func (o *objectMap) Type() ref.Type { return types.MapType }

// Value implements ref.Val.
func (o *objectMap) Value() any { return o.m }

// String formats the map as the adapter's map does.
func (o *objectMap) String() string { return fmt.Sprint(o.native()) }

// objectList is a []any as a CEL list. A value is used by one goroutine
// unless frozen.
type objectList struct {
	s     []any
	cache []ref.Val
}

var (
	_ traits.Lister   = (*objectList)(nil)
	_ traits.Foldable = (*objectList)(nil)
	_ traits.Zeroer   = (*objectList)(nil)
)

func (l *objectList) native() ref.Val { return types.DefaultTypeAdapter.NativeToValue(l.s) }

func (l *objectList) elem(i int) ref.Val {
	if l.cache == nil {
		l.cache = make([]ref.Val, len(l.s))
	}
	v := l.cache[i]
	if v == nil {
		v = Wrap(l.s[i])
		l.cache[i] = v
	}
	return v
}

// Get implements traits.Indexer as the adapter's list does.
func (l *objectList) Get(index ref.Val) ref.Val {
	i, err := types.IndexOrError(index)
	if err != nil {
		return types.ValOrErr(index, "%v", err)
	}
	if i < 0 || i >= len(l.s) {
		return types.NewErr("index '%d' out of range in list size '%d'", i, len(l.s))
	}
	return l.elem(i)
}

// Add implements traits.Adder. The adapter's list concatenates lazily and
// reads its elements through the operands; this one copies the memoised
// elements, which keeps them memoised in the result.
func (l *objectList) Add(other ref.Val) ref.Val {
	ol, ok := other.(traits.Lister)
	if !ok {
		return types.MaybeNoSuchOverloadErr(other)
	}
	n, _ := ol.Size().(types.Int)
	if len(l.s) == 0 {
		return other
	}
	if n == 0 {
		return l
	}
	out := make([]ref.Val, 0, len(l.s)+int(n))
	for i := range l.s {
		out = append(out, l.elem(i))
	}
	for i := types.Int(0); i < n; i++ {
		out = append(out, ol.Get(i))
	}
	return types.NewRefValList(types.DefaultTypeAdapter, out)
}

// Contains implements traits.Container.
func (l *objectList) Contains(elem ref.Val) ref.Val {
	for i := range l.s {
		if b, ok := elem.Equal(l.elem(i)).(types.Bool); ok && b == types.True {
			return types.True
		}
	}
	return types.False
}

// Size implements traits.Sizer.
func (l *objectList) Size() ref.Val { return types.Int(len(l.s)) }

// IsZeroValue implements traits.Zeroer.
func (l *objectList) IsZeroValue() bool { return len(l.s) == 0 }

// Iterator implements traits.Iterable.
func (l *objectList) Iterator() traits.Iterator { return &objectListIterator{l: l} }

// Fold implements traits.Foldable with the memoised values.
func (l *objectList) Fold(f traits.Folder) {
	for i := range l.s {
		if !f.FoldEntry(i, l.elem(i)) {
			break
		}
	}
}

// Equal implements ref.Val as the adapter's list does.
func (l *objectList) Equal(other ref.Val) ref.Val {
	ol, ok := other.(traits.Lister)
	if !ok {
		return types.False
	}
	if types.Int(len(l.s)) != ol.Size() {
		return types.False
	}
	for i := range l.s {
		if types.Equal(l.elem(i), ol.Get(types.Int(i))) == types.False {
			return types.False
		}
	}
	return types.True
}

// ConvertToNative implements ref.Val.
func (l *objectList) ConvertToNative(t reflect.Type) (any, error) {
	return l.native().ConvertToNative(t)
}

// ConvertToType implements ref.Val.
func (l *objectList) ConvertToType(t ref.Type) ref.Val { return convertToType(l, types.ListType, t) }

// convertToType converts a map or list value v of type own, as the
// adapter's values do: to its own type, or to its type's type.
func convertToType(v ref.Val, own *types.Type, t ref.Type) ref.Val {
	switch t {
	case own:
		return v
	case types.TypeType:
		return own
	}
	return types.NewErr("type conversion error from '%s' to '%s'", own, t)
}

// Type implements ref.Val.
func (l *objectList) Type() ref.Type { return types.ListType }

// Value implements ref.Val.
func (l *objectList) Value() any { return l.s }

// String formats the list as the adapter's list does.
func (l *objectList) String() string { return fmt.Sprint(l.native()) }

type objectListIterator struct {
	l *objectList
	i int
}

var _ traits.Iterator = (*objectListIterator)(nil)

func (it *objectListIterator) HasNext() ref.Val { return types.Bool(it.i < len(it.l.s)) }

func (it *objectListIterator) Next() ref.Val {
	if it.i >= len(it.l.s) {
		return nil
	}
	v := it.l.elem(it.i)
	it.i++
	return v
}

func (it *objectListIterator) ConvertToNative(t reflect.Type) (any, error) {
	return nil, fmt.Errorf("type conversion on iterators not supported")
}

func (it *objectListIterator) ConvertToType(t ref.Type) ref.Val {
	return types.NewErr("no such overload")
}

func (it *objectListIterator) Equal(other ref.Val) ref.Val { return types.NoSuchOverloadErr() }
func (it *objectListIterator) Type() ref.Type              { return types.IteratorType }
func (it *objectListIterator) Value() any                  { return nil }
