package report

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"
)

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
	Error     *junitFailure `xml:"error,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

// junitWriter makes one testsuite per file and one testcase per object ×
// matching constraint; a deny violation is a failure, a constraint that
// could not be evaluated an error, and warn and dryrun are recorded as
// output of a passing case. Errors of no constraint are an "evaluation"
// testcase; a run that stopped early adds an error testcase that says so.
type junitWriter struct {
	w      io.Writer
	suites []junitSuite
	index  map[string]int
}

func (j *junitWriter) suite(file string) *junitSuite {
	if j.index == nil {
		j.index = map[string]int{}
	}
	i, ok := j.index[file]
	if !ok {
		i = len(j.suites)
		j.index[file] = i
		j.suites = append(j.suites, junitSuite{Name: file})
	}
	return &j.suites[i]
}

func (j *junitWriter) Object(o *Object) error {
	s := j.suite(o.File)
	type finding struct {
		msgs []string // violations, warn and dryrun prefixed
		deny bool
		errs []string
	}
	found := map[string]*finding{}
	var order []string
	get := func(k string) *finding {
		f, ok := found[k]
		if !ok {
			f = &finding{}
			found[k] = f
			order = append(order, k)
		}
		return f
	}
	// Every matched constraint is a testcase, in the engine's order; so is
	// every constraint that reported something without being listed.
	for _, m := range o.Matched {
		get(m.Kind + "/" + m.Name)
	}
	for _, v := range sortedViolations(o.Violations) {
		f := get(v.ConstraintKind + "/" + v.ConstraintName)
		if v.EnforcementAction == "deny" {
			f.deny = true
			f.msgs = append(f.msgs, v.Message)
		} else {
			f.msgs = append(f.msgs, v.EnforcementAction+": "+v.Message)
		}
	}
	for _, e := range o.Errors {
		k := e.policy()
		if k == "" {
			k = "evaluation"
		}
		f := get(k)
		f.errs = append(f.errs, e.Message)
	}
	for _, k := range order {
		f := found[k]
		c := junitCase{Name: fmt.Sprintf("%s × %s", o.ID(), k), Classname: o.File}
		switch {
		case len(f.errs) > 0:
			// A constraint that could not be evaluated did not pass, whatever
			// else it reported.
			c.Error = &junitFailure{Message: f.errs[0], Type: "error", Text: strings.Join(f.errs, "\n")}
			c.SystemOut = strings.Join(f.msgs, "\n")
			s.Errors++
		case f.deny:
			c.Failure = &junitFailure{Message: f.msgs[0], Type: "deny", Text: strings.Join(f.msgs, "\n")}
			s.Failures++
		default:
			c.SystemOut = strings.Join(f.msgs, "\n")
		}
		s.Cases = append(s.Cases, c)
		s.Tests++
	}
	return nil
}

func (j *junitWriter) Close(sum Summary) error {
	if sum.Incomplete {
		// The run's own failure is a testcase, so CI shows the report as
		// failed and why, with what was reviewed before it.
		s := j.suite("bouncer")
		s.Cases = append(s.Cases, junitCase{Name: "run × input", Classname: "bouncer",
			Error: &junitFailure{Message: "incomplete: " + sum.Error, Type: "incomplete", Text: sum.Error}})
		s.Tests++
		s.Errors++
	}
	out := junitSuites{Name: "bouncer", Suites: j.suites}
	for _, s := range j.suites {
		out.Tests += s.Tests
		out.Failures += s.Failures
		out.Errors += s.Errors
	}
	b, err := xml.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	_, err = io.WriteString(j.w, xml.Header+string(b)+"\n")
	return err
}
