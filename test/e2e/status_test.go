package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestTemplateStatus: a template that reaches the cluster without passing
// the policies webhook (here: no webhook registered) reports its compile
// error, with the line, on status, and is not marked created; once fixed it
// is. The metrics count it by status.
func TestTemplateStatus(t *testing.T) {
	b := startBouncer(t, "bouncer-status", "--manage-webhook-config=false")
	mustKubectl(t, readFile(t, "test/e2e/testdata/broken-template.yaml"), "apply", "-f", "-")
	eventually(t, 30*time.Second, func() error {
		out, err := kubectl(t, "", "get", "constrainttemplate", "e2ebroken", "-o",
			`jsonpath={.status.created}|{.status.byPod[?(@.id=="bouncer-status")].errors[0].message}`)
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if !strings.HasPrefix(out, "false|") || !strings.Contains(out, "e2ebroken.rego:") {
			return fmt.Errorf("status does not carry the compile error with its location: %q", out)
		}
		return nil
	})
	if m := b.metrics(t); !strings.Contains(m, `bouncer_constraint_templates{status="error"} 1`) {
		t.Fatalf("metrics do not count the broken template:\n%s", grepLines(m, "bouncer_constraint_templates"))
	}
	fixed := strings.Replace(readFile(t, "test/e2e/testdata/broken-template.yaml"),
		`[input.review.object.metadata.name]`, `[input.review.object.metadata.name])`, 1)
	mustKubectl(t, fixed, "apply", "-f", "-")
	eventually(t, 30*time.Second, func() error {
		out, err := kubectl(t, "", "get", "constrainttemplate", "e2ebroken", "-o",
			`jsonpath={.status.created}|{.status.byPod[?(@.id=="bouncer-status")].errors}`)
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if out != "true|" {
			return fmt.Errorf("fixed template not reported created: %q", out)
		}
		return nil
	})
	mustKubectl(t, "", "delete", "constrainttemplate", "e2ebroken")
}
