// Command gen-pods writes generated Pods (internal/podgen) as
// multi-document YAML, for load-testing bouncer test and for bench/.
//
//	go run ./hack/gen-pods -n 10000 > /tmp/pods.yaml              # for pkg/engine/testdata/bench
//	go run ./hack/gen-pods -mix library -n 10000 -o /tmp/pods.yaml # for the built-in library
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"

	"github.com/bouncer-policy/bouncer/internal/podgen"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gen-pods:", err)
		os.Exit(1)
	}
}

func run() error {
	mix := flag.String("mix", string(podgen.Engine), "engine (Pods for pkg/engine/testdata/bench) or library (Namespaces and Pods for the built-in library)")
	n := flag.Int("n", 1000, "number of Pods")
	namespaces := flag.Int("namespaces", 0, "number of namespaces (default: the mix's, 200 for engine, 100 for library)")
	violating := flag.Int("violating", -1, "percent of Pods that break a policy (default: the mix's, 25 for engine, 30 for library)")
	seed := flag.Uint64("seed", 0, "random seed (default: the mix's)")
	templates := flag.Int("templates", 0, "stamp the Pods from this many pod templates, each with its own name, uid and token volume (library mix; 0: every Pod its own)")
	out := flag.String("o", "-", "output file (- for standard output)")
	flag.Parse()
	o := podgen.DefaultOptions(podgen.Mix(*mix), *n)
	if *namespaces > 0 {
		o.Namespaces = *namespaces
	}
	if *violating >= 0 {
		o.ViolatingPercent = *violating
	}
	o.Templates = *templates
	if *seed != 0 {
		o.Seed = *seed
	}
	f := os.Stdout
	if *out != "-" {
		var err error
		if f, err = os.Create(*out); err != nil {
			return err
		}
	}
	w := bufio.NewWriterSize(f, 1<<20)
	if err := podgen.WriteYAML(w, o); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}
