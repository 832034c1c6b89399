// Package watchjson wraps a dynamic client so that its watches decode each
// JSON event in one pass, straight into the unstructured object.
//
// client-go's watch decoder frames the stream with a json.Decoder, reads
// the envelope's type twice (once to find its kind, once into a
// WatchEvent with the object kept raw), then reads the object's kind and
// decodes the object: five scans of every byte before anything is done with
// the event. Under a stream of Pod creates, that decoding was the largest
// single cost of bouncer serve's audit (bench/README). The apiserver writes
// one compact JSON event per line, so a line is a frame, and one
// unmarshal of {type, object} gives the same unstructured object.
package watchjson

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	sigsjson "sigs.k8s.io/json"
)

// MaxEvent bounds one event's size: an object in etcd is at most 1.5 MiB
// by default, and a stream that never ends a line must not grow without
// bound.
const MaxEvent = 64 << 20

// Wrap returns dyn with Watch replaced on every resource; everything else
// is dyn's. cfg is the configuration dyn was made from.
func Wrap(dyn dynamic.Interface, cfg *rest.Config) (dynamic.Interface, error) {
	c := dynamic.ConfigFor(cfg)
	c.AcceptContentTypes = "application/json" // the one format decoded here
	rc, err := rest.UnversionedRESTClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("watch client: %w", err)
	}
	return &client{Interface: dyn, rest: rc}, nil
}

type client struct {
	dynamic.Interface
	rest rest.Interface
}

func (c *client) Resource(gvr schema.GroupVersionResource) dynamic.NamespaceableResourceInterface {
	return &resource{NamespaceableResourceInterface: c.Interface.Resource(gvr), c: c, gvr: gvr}
}

type resource struct {
	dynamic.NamespaceableResourceInterface
	c   *client
	gvr schema.GroupVersionResource
}

func (r *resource) Namespace(ns string) dynamic.ResourceInterface {
	return &namespaced{ResourceInterface: r.NamespaceableResourceInterface.Namespace(ns), r: r, ns: ns}
}

func (r *resource) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	return r.c.watch(ctx, r.gvr, "", opts)
}

type namespaced struct {
	dynamic.ResourceInterface
	r  *resource
	ns string
}

func (n *namespaced) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	return n.r.c.watch(ctx, n.r.gvr, n.ns, opts)
}

func (c *client) watch(ctx context.Context, gvr schema.GroupVersionResource, ns string, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	path := []string{"api"}
	if gvr.Group != "" {
		path = []string{"apis", gvr.Group}
	}
	path = append(path, gvr.Version)
	if ns != "" {
		path = append(path, "namespaces", ns)
	}
	path = append(path, gvr.Resource)
	body, err := c.rest.Get().AbsPath(path...).SpecificallyVersionedParams(&opts, metav1.ParameterCodec, metav1.SchemeGroupVersion).Stream(ctx)
	if err != nil {
		return nil, err
	}
	return watch.NewStreamWatcher(NewDecoder(body),
		apierrors.NewClientErrorReporter(http.StatusInternalServerError, "GET", "ClientWatchDecoding")), nil
}

// Decoder reads watch events from a JSON stream of one event per line (a
// stream that breaks an event over lines is read too, line by line until
// it parses).
type Decoder struct {
	body io.ReadCloser
	r    *bufio.Reader
	buf  []byte
	max  int
}

// NewDecoder decodes the events of body, which Close closes.
func NewDecoder(body io.ReadCloser) *Decoder {
	return &Decoder{body: body, r: bufio.NewReaderSize(body, 64<<10), max: MaxEvent}
}

type event struct {
	Type   watch.EventType `json:"type"`
	Object map[string]any  `json:"object"`
}

// Decode returns the next event; io.EOF at the end of the stream.
func (d *Decoder) Decode() (watch.EventType, runtime.Object, error) {
	d.buf = d.buf[:0]
	for {
		line, err := d.r.ReadSlice('\n')
		if len(d.buf)+len(line) > d.max {
			return "", nil, fmt.Errorf("watch event longer than %d bytes", d.max)
		}
		d.buf = append(d.buf, line...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if len(bytes.TrimSpace(d.buf)) == 0 {
			if err != nil {
				return "", nil, err
			}
			d.buf = d.buf[:0]
			continue
		}
		var ev event
		uerr := sigsjson.UnmarshalCaseSensitivePreserveInts(d.buf, &ev)
		if uerr != nil && err == nil && incomplete(uerr) {
			continue // the event goes on on the next line
		}
		switch {
		case uerr == nil:
		case errors.Is(err, io.EOF):
			return "", nil, io.ErrUnexpectedEOF
		case err != nil:
			return "", nil, err
		default:
			return "", nil, fmt.Errorf("decoding a watch event: %w", uerr)
		}
		switch ev.Type {
		case watch.Added, watch.Modified, watch.Deleted, watch.Bookmark, watch.Error:
		default:
			return "", nil, fmt.Errorf("got invalid watch event type: %q", ev.Type)
		}
		// As client-go's unstructured decoding, an object must say its kind.
		kind, _ := ev.Object["kind"].(string)
		if kind == "" {
			return "", nil, fmt.Errorf("watch event %s: the object has no kind", ev.Type)
		}
		if kind == "Status" {
			// client-go's decoder gives a Status as the typed object.
			st := &metav1.Status{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(ev.Object, st); err == nil {
				return ev.Type, st, nil
			}
		}
		return ev.Type, &unstructured.Unstructured{Object: ev.Object}, nil
	}
}

// incomplete says the input ended inside a value (sigs.k8s.io/json does
// not export its SyntaxError; the message is encoding/json's).
func incomplete(err error) bool {
	return strings.Contains(err.Error(), "unexpected end of JSON input")
}

// Close closes the stream.
func (d *Decoder) Close() { _ = d.body.Close() }
