package cli

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func kubeconfigFile(t *testing.T, server string, contexts ...string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"" + server + "\"}}]\nusers: [{name: u, user: {token: t}}]\ncontexts:\n")
	for _, c := range contexts {
		b.WriteString("- {name: " + c + ", context: {cluster: c, user: u}}\n")
	}
	b.WriteString("current-context: " + contexts[0] + "\n")
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestResolveClusters(t *testing.T) {
	a := kubeconfigFile(t, "https://127.0.0.1:1", "prod", "staging")
	b := kubeconfigFile(t, "https://127.0.0.1:2", "prod")
	names := func(cs []clusterTarget) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.name+"@"+c.config.Host)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		o    ControlsOptions
		want []string
	}{
		{"current context", ControlsOptions{Kubeconfigs: []string{a}}, []string{"prod@https://127.0.0.1:1"}},
		{"contexts named", ControlsOptions{Kubeconfigs: []string{a}, Contexts: []string{"staging", "prod"}}, []string{"staging@https://127.0.0.1:1", "prod@https://127.0.0.1:1"}},
		{"one context name in two files", ControlsOptions{Kubeconfigs: []string{a, b}}, []string{a + ":prod@https://127.0.0.1:1", b + ":prod@https://127.0.0.1:2"}},
		{"directories only", ControlsOptions{Paths: []string{"policies"}}, nil},
	} {
		got, err := resolveClusters(tc.o)
		if err != nil || !slices.Equal(names(got), tc.want) {
			t.Errorf("%s: %v, %v; want %v", tc.name, names(got), err, tc.want)
		}
	}
	if _, err := resolveClusters(ControlsOptions{Kubeconfigs: []string{a, b}, Contexts: []string{"staging"}}); err == nil || !strings.Contains(err.Error(), b) {
		t.Errorf("a context missing from the second file: %v", err)
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{"policies/x": "policies/x", "my repo": "'my repo'", "it's": `'it'\''s'`, "": "''"} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
