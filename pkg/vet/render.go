package vet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/bouncer-policy/bouncer/pkg/load"
)

// rendered is what rendering a directory produced.
type rendered struct {
	docs []*load.Document
	// kustomized are the directories kustomize rendered: their files are
	// not documents of their own, so Suites among them are found apart.
	kustomized []string
}

// render reads dir as mode says. Each source (a file, a kustomize
// directory) is read on its own, so one that fails is a finding and the
// rest are still checked; a source that fails contributes no document,
// as half of a file is no basis for the checks that follow.
func (v *vetting) render(ctx context.Context, mode string) (*rendered, error) {
	st, err := os.Stat(v.dir)
	if err != nil {
		v.add(Finding{Code: CodeRender, Message: fmt.Sprintf("reading the directory: %v", errors.Unwrap(err))})
		return &rendered{}, nil
	}
	if !st.IsDir() {
		v.add(Finding{Code: CodeRender, Message: "not a directory"})
		return &rendered{}, nil
	}
	var sources []string
	switch mode {
	case RenderKustomize:
		if !load.IsKustomization(v.dir) {
			v.add(Finding{Code: CodeRender, Message: "render is kustomize, but the directory holds no kustomization.yaml, kustomization.yml or Kustomization"})
			return &rendered{}, nil
		}
		sources = []string{v.dir}
	case RenderAuto:
		if load.IsKustomization(v.dir) {
			sources = []string{v.dir}
			break
		}
		files, kustomizations, err := load.Sources(v.dir)
		if err != nil {
			v.addErr(err)
			return &rendered{}, nil
		}
		sources = append(files, kustomizations...)
	case RenderNone:
		files, err := plainFiles(v.dir)
		if err != nil {
			v.addErr(err)
			return &rendered{}, nil
		}
		sources = files
	default:
		return nil, fmt.Errorf("render mode %q: want %s, %s or %s", mode, RenderAuto, RenderNone, RenderKustomize)
	}
	out := &rendered{}
	root, err := filepath.EvalSymlinks(v.dir)
	if err != nil {
		v.add(Finding{Code: CodeRender, Message: fmt.Sprintf("reading the directory: %v", err)})
		return out, nil
	}
	for _, src := range sources {
		// A commit may hold a link to a file outside it (a token, a
		// key): what it points at is not part of the commit.
		if real, err := filepath.EvalSymlinks(src); err != nil || !within(root, real) {
			v.add(Finding{Code: CodeRender, File: v.rel(src), Message: "a symbolic link that leads outside the directory (or nowhere): not read"})
			continue
		}
		if st, err := os.Stat(src); err == nil && st.IsDir() {
			out.kustomized = append(out.kustomized, src)
		}
		if mode == RenderNone && isKustomizationFile(src) {
			v.add(Finding{Code: CodeRender, File: v.rel(src), Message: "a kustomization, but render is none: set render to auto or kustomize, or remove it"})
			continue
		}
		var docs []*load.Document
		err := load.ReadSource(ctx, src, v.opts.Load, func(d *load.Document) error {
			docs = append(docs, d)
			return nil
		})
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil {
			v.addErr(err)
			continue
		}
		out.docs = append(out.docs, docs...)
	}
	return out, nil
}

// plainFiles lists every manifest file under dir, those of kustomize
// directories included, for render none.
func plainFiles(dir string) ([]string, error) {
	files, kustomizations, err := load.Sources(dir)
	if err != nil {
		return nil, err
	}
	for _, k := range kustomizations {
		more, err := plainFiles(k)
		if err != nil {
			return nil, err
		}
		files = append(files, more...)
	}
	return files, nil
}

func isKustomizationFile(p string) bool { return load.KustomizationFile(filepath.Dir(p)) == p }

// suitesIn reads the Suites under directories kustomize rendered: kustomize
// reads only what a kustomization names, and a Suite is never named there.
// Files that do not parse are left alone: kustomize did not read them, and
// the commit does not depend on them.
func (v *vetting) suitesIn(ctx context.Context, dirs []string) ([]*load.Document, error) {
	var out []*load.Document
	for _, dir := range dirs {
		files, err := plainFiles(dir)
		if err != nil {
			continue
		}
		for _, f := range files {
			_ = load.ReadSource(ctx, f, v.opts.Load, func(d *load.Document) error {
				if isSuite(d) {
					out = append(out, d)
				}
				return nil
			})
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
		}
	}
	return out, nil
}

// within reports whether path is root or under it.
func within(root, path string) bool {
	r, err := filepath.Rel(root, path)
	return err == nil && r != ".." && !strings.HasPrefix(r, ".."+string(filepath.Separator))
}
