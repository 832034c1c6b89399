package cel

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/bouncer-policy/bouncer/pkg/engine/cel/internal/celeval"
)

// apiserverParts turns the driver's own optimisations off, one at a time
// or all, so that tests and benchmarks show what each pays for and that
// results do not depend on it:
//
//	go test ./pkg/engine/cel -run '^$' -bench 'Library/K8s.*/nocache' -cel.apiserver=share
var apiserverParts = flag.String("cel.apiserver", "", "comma-separated parts done as the apiserver does them: share, values or all")

func TestMain(m *testing.M) {
	flag.Parse()
	if err := setApiserverParts(*apiserverParts); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Exit(m.Run())
}

func setApiserverParts(list string) error {
	for _, part := range strings.Split(list, ",") {
		switch part {
		case "":
		case "share":
			celeval.NoShare = true
		case "values":
			celeval.NoValues = true
		case "all":
			celeval.NoShare, celeval.NoValues = true, true
		default:
			return fmt.Errorf("-cel.apiserver: unknown part %q", part)
		}
	}
	return nil
}
