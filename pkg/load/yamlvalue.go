package load

import (
	"bytes"
	"math"
	"strconv"
	"unicode/utf8"

	yamlv2 "go.yaml.in/yaml/v2"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/yaml"
)

// decodeYAML decodes one YAML document into the values a JSON decoder
// gives (map[string]any, []any, int64, float64, string, bool, nil),
// exactly as roundTripYAML does, without its JSON round trip: it parses
// with the same parser (go.yaml.in/yaml/v2, as sigs.k8s.io/yaml does) and
// converts the parser's values itself. What it cannot convert the same
// way cheaply, and every conversion error, goes the old way.
func decodeYAML(raw []byte) (any, error) {
	v, ok, err := decodeYAMLDirect(raw)
	if !ok {
		return roundTripYAML(raw)
	}
	return v, err
}

// roundTripYAML is how documents were decoded before decodeYAMLDirect:
// sigs.k8s.io/yaml's YAMLToJSON (yaml.v2, convertToJSONableObject,
// json.Marshal), then utiljson.Unmarshal. It is the reference
// decodeYAMLDirect matches, and its fallback.
func roundTripYAML(raw []byte) (any, error) {
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return nil, err
	}
	var v any
	if err := utiljson.Unmarshal(js, &v); err != nil {
		return nil, err
	}
	return v, nil
}

// decodeYAMLDirect parses raw as YAMLToJSON does and converts the result
// as convertToJSONableObject, json.Marshal and utiljson.Unmarshal would.
// ok is false when the round trip would fail after parsing, or give a
// result that depends on map order, or do something this conversion does
// not replicate: the caller then takes the round trip. A parse error is
// returned with ok true: it is the round trip's too.
func decodeYAMLDirect(raw []byte) (v any, ok bool, err error) {
	var y any
	if err := yamlv2.Unmarshal(raw, &y); err != nil {
		return nil, true, err
	}
	v, ok = jsonValue(y, 0)
	return v, ok, nil
}

// maxJSONDepth is the deepest nesting of arrays and objects the JSON
// decoder accepts (its maxNestingDepth); deeper, the round trip fails.
const maxJSONDepth = 10000

// jsonValue converts what yaml.v2 decodes into an interface{} into what
// the round trip gives; depth is the number of arrays and objects around
// v. The parser's values are fresh for every node (an alias is decoded
// again, not shared), so sequences are converted in place, and a value
// that does not change is returned as it came, without boxing it again.
func jsonValue(v any, depth int) (any, bool) {
	switch x := v.(type) {
	case string:
		if utf8.ValidString(x) {
			return v, true
		}
		return jsonString(x), true
	case map[any]any:
		if depth++; depth > maxJSONDepth {
			return nil, false
		}
		m := make(map[string]any, len(x))
		for k, e := range x {
			ks, ok := jsonKey(k)
			if !ok {
				return nil, false
			}
			if m[ks], ok = jsonValue(e, depth); !ok {
				return nil, false
			}
		}
		// Two keys became one string (1 and "1", two .nan): the round trip
		// keeps whichever value its map iteration met last.
		if len(m) != len(x) {
			return nil, false
		}
		return m, true
	case []any:
		if depth++; depth > maxJSONDepth {
			return nil, false
		}
		var ok bool
		for i, e := range x {
			if x[i], ok = jsonValue(e, depth); !ok {
				return nil, false
			}
		}
		return v, true
	case bool, nil:
		return v, true
	case int:
		return int64(x), true
	case int64:
		return v, true
	case uint64:
		// yaml.v2 gives uint64 only above math.MaxInt64: JSON's digits do
		// not parse as an int64, so they become a float64.
		return jsonNumber(strconv.AppendUint(make([]byte, 0, 24), x, 10))
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, false // json: unsupported value
		}
		// json.Marshal's format: 'f' between 1e-6 and 1e21, so an integral
		// float (1.0, 2e3, -0.0) is written as digits and read as int64.
		abs := math.Abs(x)
		format := byte('f')
		if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
			format = 'e'
		}
		if format == 'e' || x != math.Trunc(x) {
			return v, true // written with a '.' or an exponent: read back as x
		}
		var buf [32]byte
		return jsonNumber(strconv.AppendFloat(buf[:0], x, format, -1, 64))
	}
	return nil, false
}

// jsonNumber reads a number as json.Marshal wrote it, as utiljson does:
// an int64 when it has no '.' and fits, a float64 otherwise.
func jsonNumber(s []byte) (any, bool) {
	if bytes.IndexByte(s, '.') < 0 {
		if i, err := strconv.ParseInt(string(s), 10, 64); err == nil {
			return i, true
		}
	}
	f, err := strconv.ParseFloat(string(s), 64)
	if err != nil {
		return nil, false
	}
	return f, true
}

// jsonKey turns a map key into a string as convertToJSONableObject does,
// then as json.Marshal writes it; false for the keys it refuses.
func jsonKey(k any) (string, bool) {
	switch x := k.(type) {
	case string:
		if utf8.ValidString(x) {
			return x, true
		}
		return jsonString(x), true
	case int:
		return strconv.Itoa(x), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case float64:
		s := strconv.FormatFloat(x, 'g', -1, 32)
		switch s {
		case "+Inf":
			s = ".inf"
		case "-Inf":
			s = "-.inf"
		case "NaN":
			s = ".nan"
		}
		return s, true
	case bool:
		if x {
			return "true", true
		}
		return "false", true
	}
	return "", false
}

// jsonString is s as json.Marshal writes it and a decoder reads it back:
// every byte that does not start a valid UTF-8 sequence becomes U+FFFD
// (a !!binary scalar decodes to arbitrary bytes).
func jsonString(s string) string {
	b := make([]byte, 0, len(s)+8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = utf8.AppendRune(b, utf8.RuneError)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return string(b)
}
