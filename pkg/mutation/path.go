package mutation

import (
	"fmt"
	"strconv"
	"strings"
)

// Node is one step of a location: a field of an object, or the element of
// a list selected by a key field ("[name: foo]") or all of them ("[name: *]").
type Node struct {
	// Field is the object field; empty for a list node.
	Field string
	// List is true for a list node, whose KeyField and KeyValue select
	// elements; Glob selects every element.
	List     bool
	KeyField string
	KeyValue string
	// KeyInt is true when KeyValue was written as a bare integer
	// ([containerPort: 80]): it then matches the number, as in Gatekeeper,
	// while a quoted "80" matches the string.
	KeyInt bool
	Glob   bool
}

// keyValue is the value a list element's key field must hold.
func (n Node) keyValue() any {
	if n.KeyInt {
		v, _ := strconv.ParseInt(n.KeyValue, 10, 64)
		return v
	}
	return n.KeyValue
}

// Path is a parsed location such as spec.containers[name: *].image.
type Path []Node

// PathError is a location that does not parse: Pos is the 0-based byte
// offset of the problem in Input.
type PathError struct {
	Input  string
	Pos    int
	Reason string
}

func (e *PathError) Error() string {
	return fmt.Sprintf("location %q: at position %d: %s", e.Input, e.Pos, e.Reason)
}

// String writes the path back in Gatekeeper's syntax, quoting what needs it.
func (p Path) String() string {
	var b strings.Builder
	for i, n := range p {
		if n.List {
			b.WriteString("[")
			b.WriteString(quoteIfNeeded(n.KeyField))
			b.WriteString(": ")
			switch {
			case n.Glob:
				b.WriteString("*")
			case n.KeyInt:
				b.WriteString(n.KeyValue)
			default:
				b.WriteString(quoteIfNeeded(n.KeyValue))
			}
			b.WriteString("]")
			continue
		}
		if i > 0 {
			b.WriteString(".")
		}
		b.WriteString(quoteIfNeeded(n.Field))
	}
	return b.String()
}

func quoteIfNeeded(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool { return !isIdentRune(r) }) < 0 && !allDigits(s) {
		return s
	}
	// Only the quote and the backslash are escaped: the parser reads any
	// other byte inside quotes as itself.
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

func isIdentRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-'
}

func allDigits(s string) bool {
	return s != "" && strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' }) < 0
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// pathParser reads a location left to right; identifiers are runs of
// letters, digits, '_' and '-', anything else must be quoted with " or '
// (backslash escapes the next character).
type pathParser struct {
	in  string
	pos int
}

// ParsePath parses a Gatekeeper location.
func ParsePath(s string) (Path, error) {
	p := &pathParser{in: s}
	var out Path
	p.skipSpace()
	if p.pos == len(s) {
		return nil, p.fail("the location is empty")
	}
	for {
		field, err := p.ident("a field name")
		if err != nil {
			return nil, err
		}
		out = append(out, Node{Field: field})
		p.skipSpace()
		for p.peek() == '[' {
			n, err := p.listNode()
			if err != nil {
				return nil, err
			}
			if out[len(out)-1].List {
				return nil, p.failAt(p.pos, "two list selectors in a row: a list of lists cannot be addressed")
			}
			out = append(out, n)
			p.skipSpace()
		}
		switch c := p.peek(); {
		case p.pos == len(s):
			return out, nil
		case c == '.':
			p.pos++
			p.skipSpace()
			if p.pos == len(s) {
				return nil, p.fail("a field name must follow '.'")
			}
		default:
			return nil, p.fail(fmt.Sprintf("unexpected %q: expected '.', '[' or the end (quote names holding other characters)", c))
		}
	}
}

func (p *pathParser) listNode() (Node, error) {
	p.pos++ // '['
	p.skipSpace()
	key, err := p.ident("a list key field")
	if err != nil {
		return Node{}, err
	}
	p.skipSpace()
	if p.peek() != ':' {
		return Node{}, p.fail("expected ':' after the list key field")
	}
	p.pos++
	p.skipSpace()
	n := Node{List: true, KeyField: key}
	if p.peek() == '*' {
		p.pos++
		n.Glob = true
	} else {
		start, quoted := p.pos, p.peek() == '"' || p.peek() == '\''
		if n.KeyValue, err = p.ident("a list key value or '*'"); err != nil {
			return Node{}, err
		}
		if !quoted && allDigits(n.KeyValue) {
			if _, err := strconv.ParseInt(n.KeyValue, 10, 64); err != nil {
				return Node{}, p.failAt(start, "the list key value "+n.KeyValue+" is out of range for an integer")
			}
			n.KeyInt = true
		}
	}
	p.skipSpace()
	if p.peek() != ']' {
		if p.pos == len(p.in) {
			return Node{}, p.fail("unterminated list selector: expected ']'")
		}
		return Node{}, p.fail(fmt.Sprintf("unexpected %q: expected ']'", p.peek()))
	}
	p.pos++
	return n, nil
}

// ident reads a bare or quoted identifier.
func (p *pathParser) ident(what string) (string, error) {
	start := p.pos
	if p.pos == len(p.in) {
		return "", p.fail("expected " + what)
	}
	if q := p.in[p.pos]; q == '"' || q == '\'' {
		var b strings.Builder
		p.pos++
		for p.pos < len(p.in) {
			c := p.in[p.pos]
			switch {
			case c == q:
				p.pos++
				if b.Len() == 0 {
					return "", p.failAt(start, what+" must not be empty")
				}
				return b.String(), nil
			case c == '\\' && p.pos+1 < len(p.in):
				b.WriteByte(p.in[p.pos+1])
				p.pos += 2
			default:
				b.WriteByte(c)
				p.pos++
			}
		}
		return "", p.failAt(start, "unterminated quoted string")
	}
	for p.pos < len(p.in) && isIdentRune(rune(p.in[p.pos])) {
		p.pos++
	}
	if p.pos == start {
		return "", p.fail(fmt.Sprintf("unexpected %q: expected %s (quote names holding other characters)", p.in[p.pos], what))
	}
	return p.in[start:p.pos], nil
}

func (p *pathParser) peek() byte {
	if p.pos < len(p.in) {
		return p.in[p.pos]
	}
	return 0
}

func (p *pathParser) skipSpace() {
	for p.pos < len(p.in) && isSpace(p.in[p.pos]) {
		p.pos++
	}
}

func (p *pathParser) fail(reason string) error { return p.failAt(p.pos, reason) }

func (p *pathParser) failAt(pos int, reason string) error {
	return &PathError{Input: p.in, Pos: pos, Reason: reason}
}

// hasPrefix reports whether short is a prefix of p, node for node.
func (p Path) hasPrefix(short Path) bool {
	if len(short) > len(p) {
		return false
	}
	for i := range short {
		if short[i] != p[i] {
			return false
		}
	}
	return true
}
