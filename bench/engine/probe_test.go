package engine

import (
	"testing"

	constraintclient "github.com/open-policy-agent/frameworks/constraint/pkg/client"
	"github.com/open-policy-agent/frameworks/constraint/pkg/client/drivers/rego"
	"github.com/open-policy-agent/gatekeeper/v3/pkg/target"
	"github.com/bouncer-policy/bouncer/pkg/policyset"
)

func TestProbe(t *testing.T) {
	d, _ := rego.New()
	_, _ = constraintclient.NewClient(constraintclient.Targets(&target.K8sValidationTarget{}), constraintclient.Driver(d))
	_, _ = policyset.NewEngine(0, "")
}
