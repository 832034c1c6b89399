package load

import (
	"bytes"
	"testing"

	"github.com/bouncer-policy/bouncer/internal/podgen"
)

// BenchmarkDecodePods splits and decodes 200 generated Pods (and their
// Namespaces) as one multi-document YAML stream: directly (new) and
// through the JSON round trip (old).
func BenchmarkDecodePods(b *testing.B) {
	var in bytes.Buffer
	if err := podgen.WriteYAML(&in, podgen.DefaultOptions(podgen.Library, 200)); err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name   string
		decode func([]byte) (any, error)
	}{{"new", decodeYAML}, {"old", roundTripYAML}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(in.Len()))
			b.ReportAllocs()
			for b.Loop() {
				n := 0
				err := split("pods.yaml", bytes.NewReader(in.Bytes()), DefaultMaxDocumentBytes, func(_ int, raw []byte) error {
					v, err := bc.decode(raw)
					if _, ok := v.(map[string]any); ok {
						n++
					}
					return err
				})
				if err != nil || n < 200 {
					b.Fatalf("%d objects, %v", n, err)
				}
			}
		})
	}
}
