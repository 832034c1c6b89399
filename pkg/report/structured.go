package report

import (
	"encoding/json"
	"io"

	"sigs.k8s.io/yaml"
)

type structuredWriter struct {
	w       io.Writer
	yaml    bool
	objects []*Object
}

func (s *structuredWriter) Object(o *Object) error {
	if len(o.Violations) > 0 || len(o.Errors) > 0 {
		c := *o
		c.Violations = sortedViolations(o.Violations)
		s.objects = append(s.objects, &c)
	}
	return nil
}

// Document is the JSON/YAML report.
type Document struct {
	Results []*Object `json:"results"`
	Summary Summary   `json:"summary"`
}

func (s *structuredWriter) Close(sum Summary) error {
	doc := Document{Results: s.objects, Summary: sum}
	if doc.Results == nil {
		doc.Results = []*Object{}
	}
	var b []byte
	var err error
	if s.yaml {
		b, err = yaml.Marshal(doc)
	} else {
		b, err = json.MarshalIndent(doc, "", "  ")
		b = append(b, '\n')
	}
	if err != nil {
		return err
	}
	_, err = s.w.Write(b)
	return err
}
