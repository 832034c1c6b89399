package vet

import (
	"context"
	"testing"
)

func TestShippedPoliciesPass(t *testing.T) {
	for _, dir := range []string{"../../examples", "../../library"} {
		res, err := Dir(context.Background(), dir, Options{RequireSuitesPass: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range res.Findings {
			t.Errorf("%s: %s", dir, f)
		}
		if len(res.Objects) == 0 {
			t.Errorf("%s: no objects", dir)
		}
		t.Logf("%s: %d objects", dir, len(res.Objects))
	}
}
