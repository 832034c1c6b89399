package targets

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bouncer-policy/bouncer/pkg/controls"
)

func TestFromPath(t *testing.T) {
	target, err := FromPath(context.Background(), "testdata/policies", "")
	if err != nil {
		t.Fatal(err)
	}
	if target.Name != "testdata/policies" || len(target.Templates) != 1 || target.Templates[0].Kind != "K8sPrivileged" {
		t.Fatalf("target = %+v", target)
	}
	if want := []string{"kube-system", "bouncer-system", "sandbox-*"}; !slices.Equal(target.Exempt, want) {
		t.Errorf("exempt = %v, want %v (the audit-only exclusion does not exempt admission)", target.Exempt, want)
	}
	if len(target.Constraints) != 2 {
		t.Fatalf("constraints = %+v", target.Constraints)
	}
	all, prod := target.Constraints[0], target.Constraints[1]
	if all.Action != "deny" || all.TotalViolations != 2 || prod.Selective != true || all.Selective {
		t.Errorf("constraints = %+v", target.Constraints)
	}
	// Sandboxes are exempt by the Config, so excluding them still covers
	// every namespace; the audit's violations show.
	pss := controls.Standard{ID: "pss"}
	if got := controls.Cover(target, pss, "baseline/privileged"); got.Status != controls.EnforcedWithViolations || strings.Join(got.Constraints, ",") != "K8sPrivileged/all-but-sandboxes" {
		t.Errorf("Cover = %+v", got)
	}
}

func TestFromPathErrors(t *testing.T) {
	if _, err := FromPath(context.Background(), "testdata/none", ""); err == nil || !strings.Contains(err.Error(), "testdata/none") {
		t.Errorf("a missing directory: %v", err)
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("apiVersion: constraints.gatekeeper.sh/v1beta1\nkind: K8sX\nmetadata: {name: x}\nspec: {match: {namespaces: 3}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := FromPath(context.Background(), dir, ""); err == nil || !strings.Contains(err.Error(), "bad.yaml") {
		t.Errorf("a constraint whose match does not decode: %v", err)
	}
}
