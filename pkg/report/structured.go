package report

import (
	"encoding/json"
	"io"

	"sigs.k8s.io/yaml"
)

// Document is the JSON/YAML report.
type Document struct {
	Results []*Object `json:"results"`
	Summary Summary   `json:"summary"`
}

// jsonWriter streams each finding as it comes, so memory does not grow with
// the number of findings; the output is the indented Document.
type jsonWriter struct {
	w       io.Writer
	started bool
	n       int
	err     error
}

func (j *jsonWriter) write(b []byte) {
	if j.err == nil {
		_, j.err = j.w.Write(b)
	}
}

func (j *jsonWriter) Object(o *Object) error {
	if len(o.Violations) == 0 && len(o.Errors) == 0 {
		return j.err
	}
	if !j.started {
		j.write([]byte("{\n  \"results\": [\n    "))
		j.started = true
	} else {
		j.write([]byte(",\n    "))
	}
	c := *o
	c.Violations = sortedViolations(o.Violations)
	b, err := json.MarshalIndent(&c, "    ", "  ")
	if err != nil {
		return err
	}
	j.write(b)
	j.n++
	return j.err
}

func (j *jsonWriter) Close(sum Summary) error {
	if !j.started {
		j.write([]byte("{\n  \"results\": []"))
	} else {
		j.write([]byte("\n  ]"))
	}
	b, err := json.MarshalIndent(sum, "  ", "  ")
	if err != nil {
		return err
	}
	j.write([]byte(",\n  \"summary\": "))
	j.write(b)
	j.write([]byte("\n}\n"))
	return j.err
}

// yamlWriter keeps the findings (not the objects) and writes one document.
type yamlWriter struct {
	w       io.Writer
	objects []*Object
}

func (s *yamlWriter) Object(o *Object) error {
	if len(o.Violations) > 0 || len(o.Errors) > 0 {
		c := *o
		c.Violations = sortedViolations(o.Violations)
		s.objects = append(s.objects, &c)
	}
	return nil
}

func (s *yamlWriter) Close(sum Summary) error {
	doc := Document{Results: s.objects, Summary: sum}
	if doc.Results == nil {
		doc.Results = []*Object{}
	}
	b, err := yaml.Marshal(doc)
	if err != nil {
		return err
	}
	_, err = s.w.Write(b)
	return err
}
