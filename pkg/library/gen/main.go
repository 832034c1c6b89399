// Command gen writes the library index (library/README.md) from the
// embedded policies. Run it with `go generate ./pkg/library`.
package main

import (
	"fmt"
	"os"

	"github.com/bouncer-policy/bouncer/pkg/library"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gen OUTPUT")
		os.Exit(2)
	}
	policies, err := library.Policies()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := os.WriteFile(os.Args[1], []byte(library.Index(policies)), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
