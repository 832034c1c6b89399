package load

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type seen struct {
	file       string
	line, idx  int
	kind, name string
	ns         string
}

func collect(t *testing.T, paths []string, opts Options) ([]seen, []*Document, error) {
	t.Helper()
	var out []seen
	var docs []*Document
	err := Walk(paths, opts, func(d *Document) error {
		out = append(out, seen{d.File, d.Line, d.Index, d.Kind(), d.Name(), d.Namespace()})
		docs = append(docs, d)
		return nil
	})
	return out, docs, err
}

func TestMultiDocument(t *testing.T) {
	got, docs, err := collect(t, []string{"testdata/multi.yaml"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := "testdata/multi.yaml"
	want := []seen{
		{f, 2, 0, "Pod", "first", "shop"},
		{f, 11, 1, "ConfigMap", "second", ""},
		{f, 19, 2, "ConfigMap", "item-0", ""},
		{f, 19, 2, "Secret", "item-1", ""},
		{f, 31, 3, "ConfigMap", "json", ""},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d documents %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("document %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	data := docs[1].Object["data"].(map[string]any)
	if data["replicas"] != int64(3) || data["ratio"] != 0.5 {
		t.Errorf("numbers: %T %v, %T %v; want int64 3 and float64 0.5", data["replicas"], data["replicas"], data["ratio"], data["ratio"])
	}
	if docs[0].Location() != "testdata/multi.yaml:2" || docs[0].APIVersion() != "v1" {
		t.Errorf("Location %q APIVersion %q", docs[0].Location(), docs[0].APIVersion())
	}
}

func TestMalformedYAML(t *testing.T) {
	var n int
	err := Walk([]string{"testdata/malformed.yaml"}, Options{}, func(*Document) error { n++; return nil })
	var le *Error
	if !errors.As(err, &le) {
		t.Fatalf("error %v is not a *load.Error", err)
	}
	if le.File != "testdata/malformed.yaml" || le.Line != 6 {
		t.Errorf("located at %s:%d, want testdata/malformed.yaml:6 (the broken document)", le.File, le.Line)
	}
	// The parser's own line number is made absolute in the file: the flow
	// sequence opened on line 10 is never closed.
	if !strings.Contains(err.Error(), "line 10") && !strings.Contains(err.Error(), "line 11") {
		t.Errorf("error %q: want the absolute line (10 or 11) of the problem", err)
	}
	if !strings.HasPrefix(err.Error(), "testdata/malformed.yaml:6: malformed document 2") {
		t.Errorf("error %q: want it to start with file:line and the document number", err)
	}
	if n != 1 {
		t.Errorf("%d documents before the error, want 1", n)
	}
}

func TestMalformedJSON(t *testing.T) {
	err := Read("x.json", strings.NewReader("\n\n{\"apiVersion\": \"v1\",\n \"kind\": }\n"), func(*Document) error { return nil })
	if err == nil || !strings.HasPrefix(err.Error(), "x.json:3: malformed document 1") {
		t.Errorf("error %v", err)
	}
}

func TestNotObjects(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"just a string\n", "document 1 is a string, not an object"},
		{"- a\n- b\n", "document 1 is a list, not an object"},
		{"42\n", "document 1 is a number, not an object"},
		{"true\n", "document 1 is a boolean, not an object"},
		{"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n[1, 2]\n", "in.yaml:5: document 2 is a list"},
		{"apiVersion: v1\nkind: List\nitems: [1]\n", "items[0] is a number, not an object"},
	} {
		err := Read("in.yaml", strings.NewReader(tc.in), func(*Document) error { return nil })
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.in, err, tc.want)
		}
	}
	// null documents are skipped, like empty ones.
	n := 0
	if err := Read("in.yaml", strings.NewReader("null\n---\n~\n"), func(*Document) error { n++; return nil }); err != nil || n != 0 {
		t.Errorf("null documents: %d, %v", n, err)
	}
}

func TestCommentsOnlyAndEmpty(t *testing.T) {
	for _, in := range []string{"", "\n\n", "# only\n# comments\n", "---\n---\n", "---\n# c\n---\n...\n", "  \n\t\n"} {
		n := 0
		if err := Read("in.yaml", strings.NewReader(in), func(*Document) error { n++; return nil }); err != nil || n != 0 {
			t.Errorf("%q: %d documents, error %v; want none", in, n, err)
		}
	}
}

func TestNoTrailingNewline(t *testing.T) {
	n := 0
	err := Read("in.yaml", strings.NewReader("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}"), func(d *Document) error {
		n++
		if d.Name() != "a" {
			t.Errorf("name %q", d.Name())
		}
		return nil
	})
	if err != nil || n != 1 {
		t.Errorf("%d documents, %v", n, err)
	}
}

// bigReader yields one YAML document of size bytes without holding it.
type bigReader struct{ left int }

func (b *bigReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.EOF
	}
	line := []byte("k: vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv\n")
	n := 0
	for n+len(line) <= len(p) && b.left > 0 {
		n += copy(p[n:], line)
		b.left -= len(line)
	}
	if n == 0 {
		n = copy(p, line[:len(p)])
		b.left -= n
	}
	return n, nil
}

func TestDocumentTooLarge(t *testing.T) {
	in := io.MultiReader(strings.NewReader("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n"), &bigReader{left: DefaultMaxDocumentBytes + 1024})
	n := 0
	err := Read("big.yaml", in, func(*Document) error { n++; return nil })
	if err == nil || !strings.HasPrefix(err.Error(), "big.yaml:5: ") || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("error %v, want big.yaml:5: ... larger than ...", err)
	}
	if n != 1 {
		t.Errorf("%d documents before the large one, want 1", n)
	}
}

func TestStdin(t *testing.T) {
	in := strings.NewReader("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n")
	got, _, err := collect(t, []string{Stdin}, Options{Stdin: in})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].file != "<stdin>" || got[0].line != 1 || got[0].name != "p" {
		t.Errorf("got %+v", got)
	}
}

func TestDirectory(t *testing.T) {
	got, _, err := collect(t, []string{"testdata/dir"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range got {
		names = append(names, s.name)
	}
	// Files in lexical order (hidden dirs and non-manifests skipped), then
	// nested kustomizations rendered.
	if want := "a,b,c,k-d"; strings.Join(names, ",") != want {
		t.Errorf("names %v, want %s", names, want)
	}
	if got[3].file != filepath.Join("testdata/dir/app", "kustomization.yaml") {
		t.Errorf("kustomize location %q", got[3].file)
	}
}

func TestKustomize(t *testing.T) {
	if !IsKustomization("testdata/kustomize") || IsKustomization("testdata/dir") {
		t.Fatal("IsKustomization")
	}
	got, docs, err := collect(t, []string{"testdata/kustomize"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	byKind := map[string]*Document{}
	for _, d := range docs {
		byKind[d.Kind()] = d
	}
	if len(got) != 2 || byKind["Deployment"] == nil || byKind["Service"] == nil {
		t.Fatalf("got %+v", got)
	}
	d := byKind["Deployment"]
	if d.Name() != "prod-web" || d.Namespace() != "shop" || d.File != filepath.Join("testdata/kustomize", "kustomization.yaml") || d.Line != 1 {
		t.Errorf("deployment %s/%s at %s", d.Namespace(), d.Name(), d.Location())
	}
	spec := d.Object["spec"].(map[string]any)
	if spec["replicas"] != int64(2) {
		t.Errorf("replicas %T %v: want int64 like the YAML loader", spec["replicas"], spec["replicas"])
	}
	c := spec["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
	if c["image"] != "nginx:latest" {
		t.Errorf("image %v: kustomize images transformer not applied", c["image"])
	}

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte("resources: [missing.yaml]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Walk([]string{dir}, Options{}, func(*Document) error { return nil }); err == nil || !strings.Contains(err.Error(), "kustomize build") || !strings.Contains(err.Error(), dir) {
		t.Errorf("broken kustomization: %v", err)
	}
}

func TestMissingPath(t *testing.T) {
	err := Walk([]string{"testdata/nope.yaml"}, Options{}, func(*Document) error { return nil })
	if err == nil || !strings.HasPrefix(err.Error(), "testdata/nope.yaml: ") {
		t.Errorf("error %v", err)
	}
}

func TestCallbackErrorStops(t *testing.T) {
	stop := fmt.Errorf("stop")
	n := 0
	err := Walk([]string{"testdata/multi.yaml"}, Options{}, func(*Document) error { n++; return stop })
	if err != stop || n != 1 {
		t.Errorf("err %v after %d documents; want the callback's error after 1", err, n)
	}
}

func TestCheckObject(t *testing.T) {
	for _, tc := range []struct {
		obj  map[string]any
		want string
	}{
		{map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": map[string]any{"name": "a"}}, ""},
		{map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": map[string]any{"generateName": "a-"}}, ""},
		{map[string]any{"kind": "Pod", "metadata": map[string]any{"name": "a"}}, "missing apiVersion"},
		{map[string]any{"foo": "bar"}, "missing apiVersion, kind, metadata.name"},
	} {
		err := CheckObject(&Document{File: "f.yaml", Line: 3, Index: 1, Object: tc.obj})
		if tc.want == "" {
			if err != nil {
				t.Errorf("%v: %v", tc.obj, err)
			}
			continue
		}
		if err == nil || !strings.HasPrefix(err.Error(), "f.yaml:3: document 2 is not a Kubernetes object") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.obj, err, tc.want)
		}
	}
}

func TestInto(t *testing.T) {
	var v struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	d := &Document{File: "f.yaml", Line: 4, Object: map[string]any{"kind": "Pod", "metadata": map[string]any{"name": "a"}}}
	if err := Into(d, &v); err != nil || v.Kind != "Pod" || v.Metadata.Name != "a" {
		t.Errorf("Into: %+v %v", v, err)
	}
	bad := &Document{File: "f.yaml", Line: 4, Object: map[string]any{"kind": "Pod", "metadata": "not an object"}}
	if err := Into(bad, &v); err == nil || !strings.HasPrefix(err.Error(), "f.yaml:4: Pod") {
		t.Errorf("Into: error %v, want it located", err)
	}
}
