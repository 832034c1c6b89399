// Command genpods writes generated Namespaces and Pods (bench/internal/gen)
// as multi-document YAML for the throughput benchmarks.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"

	"github.com/bouncer-policy/bouncer/bench/internal/gen"
)

func main() {
	o := gen.DefaultOptions(1000)
	out := flag.String("o", "-", "output file (- for stdout)")
	flag.IntVar(&o.Pods, "n", o.Pods, "number of Pods")
	flag.IntVar(&o.Namespaces, "namespaces", o.Namespaces, "number of namespaces")
	flag.IntVar(&o.ViolatingPercent, "violating", o.ViolatingPercent, "percent of Pods that break at least one policy")
	flag.Uint64Var(&o.Seed, "seed", o.Seed, "random seed")
	flag.Parse()
	f := os.Stdout
	if *out != "-" {
		var err error
		if f, err = os.Create(*out); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	w := bufio.NewWriterSize(f, 1<<20)
	if err := gen.WriteYAML(w, o); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if f != os.Stdout {
		if err := f.Close(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}
