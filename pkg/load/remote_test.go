package load

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRemoteResourceOffByDefault: a kustomization naming an http resource
// makes no request unless remote resources are allowed (#12).
func TestRemoteResourceOffByDefault(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write([]byte("apiVersion: v1\nkind: Pod\nmetadata: {name: remote}\nspec: {containers: [{name: a, image: nginx:latest}]}\n"))
	}))
	defer srv.Close()
	url := srv.URL + "/pod.yaml"

	for _, tc := range []struct {
		name  string
		files map[string]string
		where string // the kustomization file the error names
		field string
	}{
		{"resources", map[string]string{"kustomization.yaml": "resources:\n- local.yaml\n- " + url + "\n", "local.yaml": cm}, "kustomization.yaml", "resources"},
		{"in a local base", map[string]string{"kustomization.yaml": "resources: [base]\n", "base/kustomization.yaml": "resources: [" + url + "]\n"}, "base/kustomization.yaml", "resources"},
		{"patch path", map[string]string{"kustomization.yaml": "resources: [local.yaml]\npatches:\n- path: " + url + "\n", "local.yaml": cm}, "kustomization.yaml", "path"},
		{"field name in another case", map[string]string{"kustomization.yaml": "Resources: [" + url + "]\n"}, "kustomization.yaml", "resources"},
		{"generator file", map[string]string{"kustomization.yaml": "generators: [gen.yaml]\n", "gen.yaml": "apiVersion: builtin\nkind: ConfigMapGenerator\nmetadata: {name: g}\nfiles: [k=" + url + "]\n"}, "gen.yaml", "files"},
		{"inline transformer", map[string]string{"kustomization.yaml": "resources: [local.yaml]\ntransformers:\n- |\n  apiVersion: builtin\n  kind: PatchTransformer\n  metadata: {name: t}\n  path: " + url + "\n", "local.yaml": cm}, "kustomization.yaml", "path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, tc.files)
			n := 0
			err := Walk([]string{dir}, Options{}, func(*Document) error { n++; return nil })
			if !errors.Is(err, ErrRemoteResource) {
				t.Fatalf("error %v, want ErrRemoteResource", err)
			}
			want := filepath.Join(dir, tc.where) + ": " + tc.field + ": \"" + url + "\" is remote, and remote resources are not fetched"
			if err.Error() != want {
				t.Errorf("error %q\nwant  %q", err, want)
			}
			if n != 0 || hits.Load() != 0 {
				t.Errorf("%d documents read, %d requests made; want none", n, hits.Load())
			}
		})
	}

	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"kustomization.yaml": "resources: [" + url + "]\n"})
	var names []string
	err := Walk([]string{dir}, Options{AllowRemote: true}, func(d *Document) error { names = append(names, d.Name()); return nil })
	if err != nil || strings.Join(names, ",") != "remote" || hits.Load() != 1 {
		t.Errorf("allowed: %v, %v, %d requests; want the remote Pod fetched once", names, err, hits.Load())
	}
}

func TestIsRemote(t *testing.T) {
	for p, want := range map[string]bool{
		"https://example.com/pod.yaml":        true,
		"HTTP://example.com/pod.yaml":         true,
		"github.com/org/repo//deploy?ref=v1":  true,
		"GitHub.com:org/repo":                 true,
		"git::https://example.com/repo.git":   true,
		"git@gitlab.example.com:org/repo.git": true,
		"ssh://git@example.com/repo":          true,
		"file:///srv/repo":                    true,
		"s3://bucket/pod.yaml":                true,
		"base":                                false,
		"../base":                             false,
		"pod.yaml":                            false,
		"configs/github.com/pod.yaml":         false,
		"./github.com-mirror/pod.yaml":        false,
	} {
		if got := isRemote(p); got != want {
			t.Errorf("isRemote(%q) = %v, want %v", p, got, want)
		}
	}
}
