package watchjson

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/bouncer-policy/bouncer/internal/podgen"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/streaming"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	restwatch "k8s.io/client-go/rest/watch"
)

type decoded struct {
	Type   watch.EventType
	Object runtime.Object
}

// decodeAll reads every event of stream with d, and the error that ended it.
func decodeAll(d watch.Decoder) ([]decoded, error) {
	defer d.Close()
	var out []decoded
	for {
		t, obj, err := d.Decode()
		if err != nil {
			return out, err
		}
		out = append(out, decoded{t, obj})
	}
}

// clientGo is the decoder client-go's dynamic client uses for JSON watches:
// its negotiated serializer's stream decoder, as rest.Request.Watch builds it.
func clientGo(t testing.TB, stream string) watch.Decoder {
	ns := dynamic.ConfigFor(&rest.Config{}).NegotiatedSerializer
	objects, events, framer, err := runtime.NewClientNegotiator(ns, schema.GroupVersion{}).StreamDecoder("application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	body := io.NopCloser(strings.NewReader(stream))
	return restwatch.NewDecoder(streaming.NewDecoder(framer.NewFrameReader(body), events), objects)
}

func ours(stream string) *Decoder { return NewDecoder(io.NopCloser(strings.NewReader(stream))) }

func line(t testing.TB, typ string, obj map[string]any) string {
	b, err := json.Marshal(map[string]any{"type": typ, "object": obj})
	if err != nil {
		t.Fatal(err)
	}
	return string(b) + "\n"
}

// The events are those of client-go's decoder, numbers and all, for the
// Pods the benchmarks create, a bookmark and an error.
func TestDecoderMatchesClientGo(t *testing.T) {
	var stream strings.Builder
	for i := range 50 {
		var p map[string]any
		if i%2 == 0 {
			p = podgen.CompliantPod(fmt.Sprintf("ok-%d", i), "ns-1")
		} else {
			p = podgen.ViolatingPod(fmt.Sprintf("bad-%d", i), "ns-1", i%7, i%11)
		}
		p["metadata"].(map[string]any)["resourceVersion"] = "1234"
		p["spec"].(map[string]any)["terminationGracePeriodSeconds"] = 30
		p["spec"].(map[string]any)["overhead"] = map[string]any{"cpu": 0.25}
		stream.WriteString(line(t, []string{"ADDED", "MODIFIED", "DELETED"}[i%3], p))
	}
	stream.WriteString(line(t, "BOOKMARK", map[string]any{"kind": "Pod", "apiVersion": "v1", "metadata": map[string]any{"resourceVersion": "99"}}))
	stream.WriteString(line(t, "ERROR", map[string]any{"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired", "code": 410, "message": "too old resource version"}))
	want, wantErr := decodeAll(clientGo(t, stream.String()))
	got, gotErr := decodeAll(ours(stream.String()))
	if !errors.Is(wantErr, io.EOF) || !errors.Is(gotErr, io.EOF) {
		t.Fatalf("ends: client-go %v, ours %v; want EOF", wantErr, gotErr)
	}
	if len(got) != 52 || !reflect.DeepEqual(got, want) {
		t.Fatalf("ours decoded %d events, client-go %d; first differing:\n%s", len(got), len(want), firstDiff(got, want))
	}
	if n := got[0].Object.(*unstructured.Unstructured).Object["spec"].(map[string]any)["terminationGracePeriodSeconds"]; n != int64(30) {
		t.Errorf("integer decoded as %T %v, want int64 30", n, n)
	}
}

func firstDiff(a, b []decoded) string {
	for i := range min(len(a), len(b)) {
		if !reflect.DeepEqual(a[i], b[i]) {
			return "ours: " + toJSON(a[i]) + "\nclient-go: " + toJSON(b[i])
		}
	}
	return "(one is a prefix of the other)"
}

func toJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

func TestDecoderEdges(t *testing.T) {
	cm := map[string]any{"kind": "ConfigMap", "apiVersion": "v1", "metadata": map[string]any{"name": "a"}}
	pretty, _ := json.MarshalIndent(map[string]any{"type": "ADDED", "object": cm}, "", "  ")
	for _, tc := range []struct {
		name    string
		stream  string
		events  int
		wantErr string // "" for io.EOF
	}{
		{name: "empty", stream: "", events: 0},
		{name: "blank lines between events", stream: "\n" + line(t, "ADDED", cm) + "\n\n" + line(t, "DELETED", cm), events: 2},
		{name: "no newline at the end", stream: strings.TrimSuffix(line(t, "ADDED", cm), "\n"), events: 1},
		{name: "an event over several lines", stream: string(pretty) + "\n" + line(t, "MODIFIED", cm), events: 2},
		{name: "cut off", stream: line(t, "ADDED", cm)[:30], events: 0, wantErr: io.ErrUnexpectedEOF.Error()},
		{name: "unknown type", stream: line(t, "RENAMED", cm), wantErr: `invalid watch event type: "RENAMED"`},
		{name: "no kind", stream: `{"type":"ADDED","object":{"metadata":{}}}` + "\n", wantErr: "has no kind"},
		{name: "no object", stream: `{"type":"ADDED"}` + "\n", wantErr: "has no kind"},
		{name: "not JSON", stream: "<html>\n", wantErr: "decoding a watch event"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeAll(ours(tc.stream))
			if len(got) != tc.events {
				t.Errorf("%d events, want %d", len(got), tc.events)
			}
			switch {
			case tc.wantErr == "" && !errors.Is(err, io.EOF):
				t.Errorf("ended with %v, want EOF", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("ended with %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// A line that never ends stops at the bound instead of growing.
func TestDecoderBound(t *testing.T) {
	d := ours(`{"type":"ADDED","object":{"kind":"ConfigMap","data":{"a":"` + strings.Repeat("x", 300<<10) + `"}}}` + "\n")
	d.max = 256 << 10
	if _, _, err := d.Decode(); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Fatalf("err %v, want the size bound", err)
	}
}

// Whatever the stream, no panic, and an event both decoders read is the
// same event.
func FuzzDecoder(f *testing.F) {
	f.Add(line(f, "ADDED", podgen.CompliantPod("a", "b")) + line(f, "BOOKMARK", map[string]any{"kind": "Pod", "metadata": map[string]any{"resourceVersion": "1"}}))
	f.Add(`{"type":"ADDED","object":{"kind":"X","a":1e400}}` + "\n")
	f.Add(`{"type":"ADDED","object":{"kind":"X","a":[1,2,{"b":null}]}}{"type":"DELETED"}` + "\n")
	f.Fuzz(func(t *testing.T, stream string) {
		got, _ := decodeAll(ours(stream))
		want, _ := decodeAll(clientGo(t, stream))
		for i := range min(len(got), len(want)) {
			if !reflect.DeepEqual(got[i], want[i]) {
				t.Fatalf("event %d differs:\n%s", i, firstDiff(got[i:i+1], want[i:i+1]))
			}
		}
	})
}

// go test -bench Decode -benchmem ./pkg/watchjson/: ours and client-go's
// decoder on the same stream of Pod events.
func BenchmarkDecode(b *testing.B) {
	var stream strings.Builder
	for i := range 200 {
		stream.WriteString(line(b, "ADDED", podgen.ViolatingPod(fmt.Sprintf("p-%d", i), "ns", i%7)))
	}
	s := stream.String()
	for _, d := range []struct {
		name string
		dec  func() watch.Decoder
	}{
		{"watchjson", func() watch.Decoder { return ours(s) }},
		{"client-go", func() watch.Decoder { return clientGo(b, s) }},
	} {
		b.Run(d.name, func(b *testing.B) {
			b.SetBytes(int64(len(s)))
			for b.Loop() {
				if got, err := decodeAll(d.dec()); len(got) != 200 || !errors.Is(err, io.EOF) {
					b.Fatalf("%d events, %v", len(got), err)
				}
			}
		})
	}
}
