package vet

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var knownCodes = map[string]bool{
	CodeRender: true, CodeKindNotAllowed: true, CodeTemplate: true, CodeConstraint: true, CodeSuite: true,
	CodeDuplicateObject: true, CodeInvalidObject: true, CodeExpansion: true, CodeConfig: true, CodePolicy: true, CodeMutator: true,
}

// FuzzDir vets hostile directories: the input is split at "\x00" into
// files, the first line of each naming it. Whatever they hold, vet must not
// fail or panic, and each finding must carry a known code, a message and a
// file inside the directory.
func FuzzDir(f *testing.F) {
	for _, dir := range []string{"testdata/many", "testdata/failing-suite", "testdata/bad-kustomize", "testdata/good", "testdata/bad-mutators"} {
		var seed bytes.Buffer
		_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			seed.WriteString(rel + "\n")
			seed.Write(b)
			seed.WriteByte(0)
			return nil
		})
		f.Add(seed.Bytes())
	}
	f.Add([]byte("kustomization.yaml\nresources: [../../etc]\n\x00a.yaml\n--- !!map\n...\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		dir := t.TempDir()
		for i, part := range bytes.Split(in, []byte{0}) {
			name, body, _ := bytes.Cut(part, []byte("\n"))
			p := filepath.Join(dir, filepath.FromSlash(cleanName(string(name), i)))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				continue
			}
			_ = os.WriteFile(p, body, 0o644)
		}
		res, err := Dir(context.Background(), dir, Options{RequireSuitesPass: true})
		if err != nil {
			t.Fatalf("Dir: %v", err)
		}
		for _, f := range res.Findings {
			if !knownCodes[f.Code] || f.Message == "" || filepath.IsAbs(f.File) || strings.HasPrefix(f.File, "..") {
				t.Errorf("finding %#v", f)
			}
		}
		if res.OK() && len(res.Objects) != len(res.Documents) {
			t.Errorf("%d objects, %d documents", len(res.Objects), len(res.Documents))
		}
	})
}

// cleanName keeps a fuzzed file name inside the directory, with a manifest
// extension most of the time.
func cleanName(name string, i int) string {
	name = filepath.ToSlash(filepath.Clean("/" + name))[1:]
	if name == "" || len(name) > 64 || strings.ContainsAny(name, "\r\\:") {
		name = "f" + strings.Repeat("x", i%3) + ".yaml"
	}
	return name
}
