// Package player serves a small HLS player page for watching a stream through Duet: the page
// plays a stream with hls.js (bundled, see assets/HLSJS_VERSION and update-hlsjs.sh), follows
// the content steering that edges put in multivariant playlists, and shows, live, which pathway
// and edge host served the last segment, the level, the buffer and any errors. It is meant for
// demos, failover drills and headless browser checks, which read the window.duetPlayer object.
//
// Routes (mount the Player on both "GET /play" and "GET /play/"):
//
//	GET /play                       the page; ?src=URL picks the stream, ?loop=0 stops at the end
//	GET /play/play.js, /play/play.css
//	GET /play/hls.min.js            hls.js, and its licence at /play/LICENSE.hls.js.txt
//
// The page plays cross-origin media: the edges it is sent to must answer with
// Access-Control-Allow-Origin.
package player

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"html/template"
	"net/http"
	"strings"
	"time"
)

//go:embed play.html play.js play.css assets/hls.min.js assets/LICENSE.hls.js.txt assets/HLSJS_VERSION
var files embed.FS

// DefaultSource is what the page plays without ?src=: steering's redirect to an edge for the
// sample stream that `duet dev` uploads. Steering serves the page, so the path is same-origin.
const DefaultSource = "/r/vod/sample/master.m3u8"

// Config configures the page.
type Config struct {
	// DefaultSource is the stream played when the page's URL has no ?src=: an absolute URL or a
	// path on the page's origin. Empty: DefaultSource.
	DefaultSource string
}

// asset is one response body with the headers that go with it.
type asset struct {
	body        []byte
	contentType string
	etag        string
}

// Player is the http.Handler for the page and its assets. It holds no mutable state.
type Player struct {
	assets map[string]asset // by request path
}

// New renders the page once and indexes the assets.
func New(cfg Config) *Player {
	if cfg.DefaultSource == "" {
		cfg.DefaultSource = DefaultSource
	}
	read := func(name string) []byte {
		b, err := files.ReadFile(name)
		if err != nil {
			// The files are compiled in: a missing one is a broken build.
			panic("player: embedded " + name + ": " + err.Error())
		}
		return b
	}
	page := template.Must(template.New("play.html").Parse(string(read("play.html"))))
	var html bytes.Buffer
	if err := page.Execute(&html, map[string]string{
		"DefaultSource": cfg.DefaultSource,
		"HLSVersion":    strings.TrimSpace(string(read("assets/HLSJS_VERSION"))),
	}); err != nil {
		panic("player: render play.html: " + err.Error())
	}
	p := &Player{assets: map[string]asset{}}
	add := func(path, contentType string, body []byte) {
		sum := sha256.Sum256(body)
		p.assets[path] = asset{body: body, contentType: contentType, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
	}
	add("/play", "text/html; charset=utf-8", html.Bytes())
	add("/play/play.js", "text/javascript; charset=utf-8", read("play.js"))
	add("/play/play.css", "text/css; charset=utf-8", read("play.css"))
	add("/play/hls.min.js", "text/javascript; charset=utf-8", read("assets/hls.min.js"))
	add("/play/LICENSE.hls.js.txt", "text/plain; charset=utf-8", read("assets/LICENSE.hls.js.txt"))
	return p
}

// csp allows the page's own scripts and styles, hls.js's worker and MediaSource (blob:), and
// fetching playlists and segments from any edge (connect-src): nothing else runs.
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"media-src 'self' blob:; worker-src 'self' blob:; connect-src *; base-uri 'none'; " +
	"form-action 'self'; frame-ancestors 'self'"

// ServeHTTP serves GET and HEAD for the page and its assets; anything else under /play/ is 404.
func (p *Player) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	a, ok := p.assets[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.contentType)
	h.Set("ETag", a.etag)
	h.Set("X-Content-Type-Options", "nosniff")
	if r.URL.Path == "/play" {
		h.Set("Content-Security-Policy", csp)
		h.Set("Cache-Control", "no-cache") // revalidate: a new build's page must not meet an old script
	} else {
		h.Set("Cache-Control", "public, max-age=300")
	}
	// ServeContent answers If-None-Match (304), HEAD and Range from the ETag and the bytes.
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}
