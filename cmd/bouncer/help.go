package main

import (
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// plainBoolFlags makes every boolean flag of the command tree read as in
// other cobra CLIs ("-h, --help   help for test"). pflag v1.1.0, which OPA
// requires, prints each of them as "--help[=true|false]"; it does so for
// values that implement IsBoolFlag, so the values are wrapped in one that
// does not, with the same "true when given alone" default. --flag=false
// still works.
func plainBoolFlags(root *cobra.Command) {
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.InitDefaultHelpFlag()
		for _, fs := range []*pflag.FlagSet{c.Flags(), c.PersistentFlags()} {
			fs.VisitAll(func(f *pflag.Flag) {
				if f.Value.Type() != "bool" {
					return
				}
				if _, wrapped := f.Value.(plainBool); !wrapped {
					f.Value = plainBool{f.Value}
				}
				if f.NoOptDefVal == "" {
					f.NoOptDefVal = "true"
				}
			})
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// plainBool is a boolean flag value without IsBoolFlag.
type plainBool struct{ v pflag.Value }

func (b plainBool) String() string     { return b.v.String() }
func (b plainBool) Set(s string) error { return b.v.Set(s) }
func (b plainBool) Type() string       { return b.v.Type() }
