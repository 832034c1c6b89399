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
			want: []string{"object.spec.containers", "oldObject.spec.containers", "operation", "object.metadata.name"},
		},
		{
			name: "request fields map to the review's",
			src:  Source{Validations: []Validation{{Expression: `request.operation != "DELETE" && request.userInfo.username != "x" && has(object.?metadata.labels)`}}},
			want: []string{"operation", "userInfo.username", "object.metadata.labels"},
		},
		{
			name: "a computed key stops the path",
			src:  Source{Validations: []Validation{{Expression: `object.metadata.labels[params.spec.parameters.key] == "x"`}}},
			want: []string{"object.metadata.labels"},
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
