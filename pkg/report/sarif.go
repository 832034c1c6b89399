package report

import (
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
)

// SARIF 2.1.0, the subset code-scanning services read.
type sarifLog struct {
	Schema  string     `json:"$schema"`
	Version string     `json:"version"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool        sarifTool         `json:"tool"`
	Invocations []sarifInvocation `json:"invocations"`
	Results     []sarifResult     `json:"results"`
}

// sarifInvocation says whether the run reviewed its whole input; when it
// did not, the notification says why.
type sarifInvocation struct {
	ExecutionSuccessful        bool                `json:"executionSuccessful"`
	ToolExecutionNotifications []sarifNotification `json:"toolExecutionNotifications,omitempty"`
}

type sarifNotification struct {
	Level   string       `json:"level"`
	Message sarifMessage `json:"message"`
}

type sarifTool struct {
	Driver sarifDriver `json:"driver"`
}

type sarifDriver struct {
	Name           string      `json:"name"`
	Version        string      `json:"version,omitempty"`
	InformationURI string      `json:"informationUri,omitempty"`
	Rules          []sarifRule `json:"rules"`
}

type sarifRule struct {
	ID                   string         `json:"id"`
	Name                 string         `json:"name,omitempty"`
	ShortDescription     *sarifMessage  `json:"shortDescription,omitempty"`
	FullDescription      *sarifMessage  `json:"fullDescription,omitempty"`
	DefaultConfiguration *sarifConfig   `json:"defaultConfiguration,omitempty"`
	Properties           map[string]any `json:"properties,omitempty"`
}

type sarifConfig struct {
	Level string `json:"level"`
}

type sarifMessage struct {
	Text string `json:"text"`
}

type sarifResult struct {
	RuleID    string          `json:"ruleId"`
	RuleIndex int             `json:"ruleIndex"`
	Level     string          `json:"level"`
	Message   sarifMessage    `json:"message"`
	Locations []sarifLocation `json:"locations"`
	// Properties carry the object ("Kind ns/name") and the outcome (deny,
	// warn, dryrun or error), which levels alone cannot tell apart.
	Properties map[string]string `json:"properties"`
}

type sarifLocation struct {
	PhysicalLocation sarifPhysical `json:"physicalLocation"`
}

type sarifPhysical struct {
	ArtifactLocation sarifArtifact `json:"artifactLocation"`
	Region           *sarifRegion  `json:"region,omitempty"`
}

type sarifArtifact struct {
	URI string `json:"uri"`
}

type sarifRegion struct {
	StartLine int `json:"startLine"`
}

type sarifWriter struct {
	w       io.Writer
	tool    ToolInfo
	rules   map[string]int
	list    []sarifRule
	results []sarifResult
}

func levelOf(action string) string {
	switch action {
	case "deny":
		return "error"
	case "warn":
		return "warning"
	default:
		return "note"
	}
}

// errorRule is the rule of errors that belong to no constraint.
const errorRule = "bouncer/review-error"

func (s *sarifWriter) rule(kind, name string) int {
	id := kind + "/" + name
	if kind == "" && name == "" {
		id = errorRule
		if i, ok := s.rules[id]; ok {
			return i
		}
		s.rules[id] = len(s.list)
		s.list = append(s.list, sarifRule{ID: id, ShortDescription: &sarifMessage{Text: "The object could not be reviewed"}})
		return s.rules[id]
	}
	if i, ok := s.rules[id]; ok {
		return i
	}
	r := sarifRule{ID: id, Name: kind, ShortDescription: &sarifMessage{Text: "Constraint " + id}}
	for _, c := range s.tool.Constraints {
		if c.Kind == kind && c.Name == name {
			if c.Title != "" {
				r.ShortDescription = &sarifMessage{Text: c.Title}
			}
			if c.Description != "" {
				r.FullDescription = &sarifMessage{Text: c.Description}
			}
			r.DefaultConfiguration = &sarifConfig{Level: levelOf(c.EnforcementAction)}
			r.Properties = map[string]any{"template": c.Template}
		}
	}
	s.rules[id] = len(s.list)
	s.list = append(s.list, r)
	return s.rules[id]
}

func (s *sarifWriter) Object(o *Object) error {
	add := func(kind, name, level, outcome, msg string) {
		idx := s.rule(kind, name)
		s.results = append(s.results, sarifResult{
			RuleID:    s.list[idx].ID,
			RuleIndex: idx,
			Level:     level,
			Message:   sarifMessage{Text: o.ID() + ": " + msg},
			Locations: []sarifLocation{{PhysicalLocation: sarifPhysical{
				ArtifactLocation: sarifArtifact{URI: artifactURI(o.File)},
				Region:           region(o.Line),
			}}},
			Properties: map[string]string{"object": o.ID(), "outcome": outcome},
		})
	}
	for _, v := range sortedViolations(o.Violations) {
		add(v.ConstraintKind, v.ConstraintName, levelOf(v.EnforcementAction), v.EnforcementAction, v.Message)
	}
	// An evaluation error is a finding too: the object was not checked.
	for _, e := range o.Errors {
		add(e.ConstraintKind, e.ConstraintName, "error", "error", "error: "+e.Message)
	}
	return nil
}

func region(line int) *sarifRegion {
	if line < 1 {
		return nil
	}
	return &sarifRegion{StartLine: line}
}

// artifactURI gives a relative, slash-separated URI, as code scanning
// resolves locations against the repository root.
func artifactURI(file string) string {
	if file == "<stdin>" {
		return "stdin"
	}
	if filepath.IsAbs(file) {
		if wd, err := filepath.Abs("."); err == nil {
			if rel, err := filepath.Rel(wd, file); err == nil && !strings.HasPrefix(rel, "..") {
				file = rel
			}
		}
	}
	return filepath.ToSlash(file)
}

func (s *sarifWriter) Close(sum Summary) error {
	name := s.tool.Name
	if name == "" {
		name = "bouncer"
	}
	log := sarifLog{
		Schema:  "https://json.schemastore.org/sarif-2.1.0.json",
		Version: "2.1.0",
		Runs: []sarifRun{{
			Tool:        sarifTool{Driver: sarifDriver{Name: name, Version: s.tool.Version, InformationURI: s.tool.URI, Rules: s.list}},
			Invocations: []sarifInvocation{{ExecutionSuccessful: !sum.Incomplete}},
			Results:     s.results,
		}},
	}
	if sum.Incomplete {
		log.Runs[0].Invocations[0].ToolExecutionNotifications = []sarifNotification{{
			Level:   "error",
			Message: sarifMessage{Text: "incomplete: the run stopped before the end of its input: " + sum.Error},
		}}
	}
	if log.Runs[0].Tool.Driver.Rules == nil {
		log.Runs[0].Tool.Driver.Rules = []sarifRule{}
	}
	if log.Runs[0].Results == nil {
		log.Runs[0].Results = []sarifResult{}
	}
	b, err := json.MarshalIndent(log, "", "  ")
	if err != nil {
		return err
	}
	_, err = s.w.Write(append(b, '\n'))
	return err
}
