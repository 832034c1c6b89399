package dashboard

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/controls"
	"github.com/bouncer-policy/bouncer/pkg/fleet"
	"github.com/bouncer-policy/bouncer/pkg/library"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Options configure the handler.
type Options struct {
	Source Source
	// Standards is the controls catalogue; default controls.Builtin().
	Standards []controls.Standard
	// Library is the policies a CVE page offers; default the embedded
	// library.
	Library []library.Policy
	Log     *slog.Logger
	// Now is time.Now, replaced in tests.
	Now func() time.Time
}

type handler struct {
	o     Options
	pages map[string]*template.Template
}

// New returns the dashboard's handler: / (fleet), /clusters/{name},
// /clusters/{name}/constraints/{kind}/{constraint}, /controls, /cves and
// /cves/{id}, and /static/.
func New(o Options) (http.Handler, error) {
	if o.Source == nil {
		return nil, fmt.Errorf("dashboard: no source")
	}
	if o.Standards == nil {
		s, err := controls.Builtin()
		if err != nil {
			return nil, fmt.Errorf("dashboard: loading the controls catalogue: %w", err)
		}
		o.Standards = s
	}
	if o.Library == nil {
		lib, err := library.Policies()
		if err != nil {
			return nil, fmt.Errorf("dashboard: loading the policy library: %w", err)
		}
		o.Library = lib
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	h := &handler{o: o, pages: map[string]*template.Template{}}
	funcs := template.FuncMap{
		"path":        url.PathEscape,
		"short":       shortCommit,
		"ago":         func(t *time.Time) string { return ago(t, o.Now()) },
		"statusClass": func(s controls.Status) string { return "st-" + string(s) },
		"join":        strings.Join,
	}
	for _, page := range []string{"fleet", "cluster", "constraint", "controls", "cves", "cve", "error"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/charts.html", "templates/"+page+".html")
		if err != nil {
			return nil, fmt.Errorf("dashboard: parsing template %s: %w", page, err)
		}
		h.pages[page] = t
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", h.fleetPage)
	mux.HandleFunc("GET /clusters/{name}", h.clusterPage)
	mux.HandleFunc("GET /clusters/{name}/constraints/{kind}/{constraint}", h.constraintPage)
	mux.HandleFunc("GET /controls", h.controlsPage)
	mux.HandleFunc("GET /cves", h.cvesPage)
	mux.HandleFunc("GET /cves/{id}", h.cvePage)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h.fail(w, r, http.StatusNotFound, "No page at "+r.URL.Path+".")
	})
	return secureHeaders(mux), nil
}

// secureHeaders forbids scripts, frames and foreign resources: the pages
// need none, so an escaping mistake cannot run anything either.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// render executes a page into a buffer first, so a template error becomes
// a 500 rather than half a page.
func (h *handler) render(w http.ResponseWriter, r *http.Request, status int, page string, data any) {
	var buf bytes.Buffer
	if err := h.pages[page].ExecuteTemplate(&buf, "layout.html", data); err != nil {
		h.o.Log.Error("dashboard: rendering", "page", page, "path", r.URL.Path, "err", err)
		http.Error(w, "rendering the page failed; see the server log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

type errorPage struct {
	base
	Status  int
	Message string
}

func (h *handler) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	h.render(w, r, status, "error", errorPage{base{Title: http.StatusText(status)}, status, msg})
}

// snapshot reads the source or answers 503.
func (h *handler) snapshot(w http.ResponseWriter, r *http.Request) (Fleet, bool) {
	f, err := h.o.Source.Snapshot(r.Context())
	if err != nil {
		h.o.Log.Warn("dashboard: reading the fleet", "err", err)
		h.fail(w, r, http.StatusServiceUnavailable, "Reading the clusters failed: "+err.Error())
		return Fleet{}, false
	}
	return f, true
}

func findCluster(f Fleet, name string) (fleet.Detail, bool) {
	for _, d := range f.Clusters {
		if d.Status.Name == name {
			return d, true
		}
	}
	return fleet.Detail{}, false
}

// base is what the layout needs of every page.
type base struct {
	Title  string
	Nav    string
	ReadAt time.Time
}

func shortCommit(c string) string {
	if len(c) > 12 {
		return c[:12]
	}
	if c == "" {
		return "-"
	}
	return c
}

func ago(t *time.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return "never"
	}
	return now.Sub(*t).Round(time.Second).String() + " ago"
}
