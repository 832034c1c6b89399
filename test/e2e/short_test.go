package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// go test -short must not report this package as passing tests it did not
// run (#11 defect 12): the summary line says "[no tests to run]".
func TestShortRunsNothing(t *testing.T) {
	cmd := exec.CommandContext(t.Context(), "go", "test", "-short", "-count=1", ".")
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go test -short: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "[no tests to run]") {
		t.Errorf("go test -short does not say it ran nothing:\n%s", out)
	}
}
