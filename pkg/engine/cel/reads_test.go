package cel

import (
	"slices"
	"strings"
	"testing"
)

func TestReadSet(t *testing.T) {
	cases := []struct {
		name string
		src  Source
		want []string // paths joined with "."; nil means unbounded
	}{
		{
			name: "anyObject is followed into its selections",
			src: Source{
				Variables:   []Variable{{Name: "containers", Expression: `variables.anyObject.spec.containers`}},
				Validations: []Validation{{Expression: `variables.containers.all(c, c.image != params.spec.parameters.image)`, MessageExpression: `"pod " + object.metadata.name`}},
			},
			want: []string{"object.spec.containers.*.image", "oldObject.spec.containers.*.image", "operation", "object.metadata.name"},
		},
		{
			name: "request fields map to the review's",
			src:  Source{Validations: []Validation{{Expression: `request.operation != "DELETE" && request.userInfo.username != "x" && has(object.?metadata.labels)`}}},
			want: []string{"operation", "userInfo.username", "object.metadata.labels"},
		},
		{
			name: "a computed key reads every entry",
			src:  Source{Validations: []Validation{{Expression: `object.metadata.labels[params.spec.parameters.key] == "x"`}}},
			want: []string{"object.metadata.labels.*"},
		},
		{
			name: "all reads the selections made on the element",
			src:  Source{Validations: []Validation{{Expression: `object.spec.containers.all(c, c.image.startsWith("r/") && c.?securityContext.?privileged.orValue(false) == false)`}}},
			want: []string{"object.spec.containers.*.image", "object.spec.containers.*.securityContext.privileged"},
		},
		{
			name: "exists over an initContainers list built with has",
			src: Source{
				Variables:   []Variable{{Name: "cs", Expression: `object.spec.containers + (has(object.spec.initContainers) ? object.spec.initContainers : [])`}},
				Validations: []Validation{{Expression: `!variables.cs.exists(c, has(c.ports))`}},
			},
			want: []string{"object.spec.containers.*.ports", "object.spec.initContainers.*.ports"},
		},
		{
			name: "map and filter results are followed into later variables",
			src: Source{
				Variables: []Variable{
					{Name: "named", Expression: `object.spec.containers.filter(c, c.name != "x")`},
					{Name: "images", Expression: `variables.named.map(c, c.image)`},
				},
				Validations: []Validation{{Expression: `variables.images.all(i, i != "bad")`}},
			},
			want: []string{"object.spec.containers.*.image", "object.spec.containers.*.name"},
		},
		{
			name: "a map result that escapes whole reads what the transform reads",
			src:  Source{Validations: []Validation{{Expression: `object.spec.containers.map(c, c.name) == ["a"]`}}},
			want: []string{"object.spec.containers.*.name"},
		},
		{
			name: "a transform that reads nothing of the element still reads the length",
			src:  Source{Validations: []Validation{{Expression: `size(object.spec.containers.map(c, 1)) < 3`}}},
			want: []string{"object.spec.containers.*"},
		},
		{
			name: "nested comprehensions follow both iteration variables",
			src:  Source{Validations: []Validation{{Expression: `object.spec.containers.all(c, c.?ports.orValue([]).all(p, p.?hostPort.orValue(0) == 0 || c.name == "ok"))`}}},
			want: []string{"object.spec.containers.*.name", "object.spec.containers.*.ports.*.hostPort"},
		},
		{
			name: "an element used whole is read whole",
			src:  Source{Validations: []Validation{{Expression: `object.spec.containers.all(c, c != {"name": "x"})`}}},
			want: []string{"object.spec.containers.*"},
		},
		{
			name: "an element passed to a function is read whole",
			src:  Source{Validations: []Validation{{Expression: `object.spec.containers.exists(c, size(string(c)) > 3)`}}},
			want: []string{"object.spec.containers.*"},
		},
		{
			name: "fields of a map built from the element are followed",
			src: Source{
				Variables:   []Variable{{Name: "p", Expression: `object.spec.containers.map(c, {"c": c, "l": c.?resources.?limits.orValue({})})`}},
				Validations: []Validation{{Expression: `variables.p.all(x, x.c.name != "" && "cpu" in x.l)`}},
			},
			want: []string{"object.spec.containers.*.name", "object.spec.containers.*.resources.limits"},
		},
		{
			name: "a two-variable comprehension reads its range whole",
			src:  Source{Validations: []Validation{{Expression: `object.metadata.labels.all(k, v, k != "" && v != "")`}}},
			want: []string{"object.metadata.labels"},
		},
		{
			name: "a comparison with null reads whether the value is there",
			src:  Source{Validations: []Validation{{Expression: `object.?spec.?volumes.orValue(null) == null`}}},
			want: []string{"object.spec.volumes"},
		},
		{
			name: "a selection whose value is not used still reads whether it fails",
			src:  Source{Validations: []Validation{{Expression: `size([object.spec.a.b, object.spec.c[params.spec.parameters.i]]) == 2 && object.spec.containers.map(c, c.name).size() > 0`}}},
			want: []string{"object.spec.a.b", "object.spec.c.*", "object.spec.containers.*.name"},
		},
		{
			name: "an index by the variable of a comprehension over string literals reads those keys",
			src:  Source{Validations: []Validation{{Expression: `["hostNetwork", "hostPID"].filter(f, object.?spec[?f].orValue(false) == true).size() == 0`}}},
			want: []string{"object.spec.hostNetwork", "object.spec.hostPID"},
		},
		{
			name: "a key computed from such a variable reads every entry",
			src:  Source{Validations: []Validation{{Expression: `["a"].all(f, object.spec[f + "x"] == 1 && object.spec[true ? f : params.spec.parameters.k] == 2)`}}},
			want: []string{"object.spec.*"},
		},
		{
			name: "request mixed with another value is unbounded",
			src:  Source{Validations: []Validation{{Expression: `(object.x == 1 ? request : object).name == "n"`}}},
		},
		{
			name: "a root rebound by a comprehension is unbounded",
			src:  Source{Validations: []Validation{{Expression: `[1].all(object, object > 0)`}}},
		},
		{
			name: "request as a whole is unbounded",
			src:  Source{Validations: []Validation{{Expression: `request != null`}}},
		},
		{
			name: "a variable named at run time is unbounded",
			src:  Source{Validations: []Validation{{Expression: `variables[params.spec.parameters.v] == 1`}}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := readSet(&c.src, nil)
			if c.want == nil {
				if !got.All {
					t.Fatalf("read set %v, want unbounded", got.Paths)
				}
				return
			}
			if got.All {
				t.Fatal("unbounded, want bounded")
			}
			var paths []string
			for _, p := range got.Paths {
				paths = append(paths, strings.Join(p, "."))
			}
			slices.Sort(paths)
			want := slices.Clone(c.want)
			slices.Sort(want)
			if !slices.Equal(slices.Compact(paths), want) {
				t.Errorf("read set %v, want %v", paths, want)
			}
		})
	}
}

// FuzzReadSet: the analysis takes any expression that parses without
// panicking, and a bounded answer names only paths in the review.
func FuzzReadSet(f *testing.F) {
	for _, s := range []string{
		`object.spec.containers.all(c, c.image == "x")`,
		`[1, 2].map(x, {"a": x, "b": object.spec}).filter(y, y.a > 1 && has(y.b.c))`,
		`object.metadata.labels.all(k, v, k != v)`,
		`variables.anyObject.?spec.?volumes.orValue([]).exists(v, v[?params.spec.parameters.t].hasValue())`,
		`size(object.spec.containers + object.spec.initContainers) > 0`,
		`request.userInfo.groups.exists(g, g == "x") ? object.a : oldObject.b`,
		`object.a.optMap(x, x.b).orValue(1) == 1`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		src := Source{Validations: []Validation{{Expression: expr, MessageExpression: expr}}}
		got := readSet(&src, nil)
		if got.All {
			return
		}
		for _, p := range got.Paths {
			if len(p) == 0 {
				t.Fatalf("%q: an empty path in a bounded read set", expr)
			}
			if p[0] == "*" {
				t.Fatalf("%q: path %q starts with every element", expr, p)
			}
		}
	})
}
