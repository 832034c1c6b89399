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
// matching constraint; a deny violation is a failure, warn and dryrun are
// recorded as output of a passing case.
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
	byConstraint := map[string][]string{}
	denies := map[string]bool{}
	for _, v := range sortedViolations(o.Violations) {
		k := v.ConstraintKind + "/" + v.ConstraintName
		prefix := ""
		if v.EnforcementAction != "deny" {
			prefix = v.EnforcementAction + ": "
		} else {
			denies[k] = true
		}
		byConstraint[k] = append(byConstraint[k], prefix+v.Message)
	}
	seen := map[string]bool{}
	for _, m := range o.Matched {
		k := m.Kind + "/" + m.Name
		if seen[k] {
			continue
		}
		seen[k] = true
		c := junitCase{Name: fmt.Sprintf("%s × %s", o.ID(), k), Classname: o.File}
		msgs := byConstraint[k]
		if denies[k] {
			c.Failure = &junitFailure{Message: msgs[0], Type: "deny", Text: strings.Join(msgs, "\n")}
			s.Failures++
		} else if len(msgs) > 0 {
			c.SystemOut = strings.Join(msgs, "\n")
		}
		s.Cases = append(s.Cases, c)
		s.Tests++
	}
	for _, e := range o.Errors {
		s.Cases = append(s.Cases, junitCase{Name: o.ID() + " × evaluation", Classname: o.File, Error: &junitFailure{Message: e, Type: "error", Text: e}})
		s.Tests++
		s.Errors++
	}
	return nil
}

func (j *junitWriter) Close(Summary) error {
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
