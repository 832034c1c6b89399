package load

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const cmYAML = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n"

func TestKustomizeConfinedToRoot(t *testing.T) {
	top := t.TempDir()
	repo := filepath.Join(top, "repo")
	writeFiles(t, top, map[string]string{
		"outside/kustomization.yaml":     "resources: [cm.yaml]\n",
		"outside/cm.yaml":                strings.Replace(cmYAML, "%s", "secret-of-the-server", 1),
		"repo/base/kustomization.yaml":   "resources: [cm.yaml]\n",
		"repo/base/cm.yaml":              strings.Replace(cmYAML, "%s", "base", 1),
		"repo/prod/kustomization.yaml":   "resources: [../base]\n",
		"repo/escape/kustomization.yaml": "resources: [../../outside]\n",
		"repo/file/kustomization.yaml":   "resources: [../../outside/cm.yaml]\n",
		"repo/abs/kustomization.yaml":    "resources: [" + filepath.Join(top, "outside") + "]\n",
		"repo/link/kustomization.yaml":   "resources: [up]\n",
	})
	if err := os.Symlink(filepath.Join(top, "outside"), filepath.Join(repo, "link", "up")); err != nil {
		t.Fatal(err)
	}
	names := func(dir string, opts Options) ([]string, error) {
		var got []string
		err := KustomizeContext(t.Context(), filepath.Join(repo, dir), opts, func(d *Document) error {
			got = append(got, d.Name())
			return nil
		})
		return got, err
	}
	// A base elsewhere in the repository is fine.
	if got, err := names("prod", Options{Root: repo}); err != nil || strings.Join(got, ",") != "base" {
		t.Fatalf("prod: %v %v", got, err)
	}
	// Bases outside (climbing out, or through a link) are what kustomize
	// itself allows; files outside and absolute roots it refuses already.
	for _, dir := range []string{"escape", "link", "file", "abs"} {
		escapes := dir == "escape" || dir == "link"
		for _, remote := range []bool{false, true} {
			got, err := names(dir, Options{Root: repo, AllowRemote: remote})
			if err == nil || len(got) > 0 {
				t.Errorf("%s (allowRemote %v): want an error and no object, got %v (objects %v)", dir, remote, err, got)
			}
			if escapes && !strings.Contains(err.Error(), ErrOutsideRoot.Error()) {
				t.Errorf("%s (allowRemote %v): the error does not say the base is outside the repository: %v", dir, remote, err)
			}
			if escapes && !remote && !errors.Is(err, ErrOutsideRoot) {
				t.Errorf("%s: the offline check's error does not wrap ErrOutsideRoot: %v", dir, err)
			}
		}
		// Without a root (a user's own machine), kustomize's own rules apply.
		if got, err := names(dir, Options{}); escapes && (err != nil || len(got) != 1) {
			t.Errorf("%s without a root: %v %v", dir, got, err)
		}
	}
}
