package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestHelpReadsLikeCobra: no command lists a boolean flag as
// "--flag[=true|false]", and boolean flags still take no value or an
// explicit one.
func TestHelpReadsLikeCobra(t *testing.T) {
	root := newRoot()
	var paths [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		paths = append(paths, path)
		for _, sub := range c.Commands() {
			walk(sub, append(append([]string(nil), path...), sub.Name()))
		}
	}
	walk(root, nil)
	if len(paths) < 10 {
		t.Fatalf("only %d commands: %v", len(paths), paths)
	}
	for _, p := range paths {
		var out bytes.Buffer
		r := newRoot()
		r.SetOut(&out)
		r.SetErr(&out)
		r.SetArgs(append(append([]string(nil), p...), "--help"))
		if err := r.Execute(); err != nil {
			t.Errorf("%v --help: %v", p, err)
		}
		help := out.String()
		if strings.Contains(help, "[=true|false]") {
			t.Errorf("bouncer %s --help lists a boolean flag with [=true|false]:\n%s", strings.Join(p, " "), help)
		}
		if !strings.Contains(help, "  -h, --help ") {
			t.Errorf("bouncer %s --help lacks the help flag:\n%s", strings.Join(p, " "), help)
		}
	}
	r := newRoot()
	verify, _, err := r.Find([]string{"verify"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want bool
	}{{[]string{"-v"}, true}, {[]string{"--verbose"}, true}, {[]string{"--verbose=false"}, false}, {[]string{"-v=true"}, true}} {
		fs := verify.Flags()
		_ = fs.Set("verbose", "false")
		if err := fs.Parse(tc.args); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if got, err := fs.GetBool("verbose"); err != nil || got != tc.want {
			t.Errorf("%v: verbose = %v (%v), want %v", tc.args, got, err, tc.want)
		}
	}
}
