package devcluster

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"

	"github.com/duetcdn/duet/internal/adminguard"
)

// The control API of `duet dev`: what the load tests (and a curious person) use to see the
// cluster and to break it on purpose.
//
//	GET  /v1/dev/cluster                   every region, its services and edges, and whether they run
//	POST /v1/dev/edges/{name}/stop|start   kill (SIGKILL; ?graceful=1 for SIGTERM) or start one edge
//	POST /v1/dev/regions/{name}/stop|start a whole region: edges, steering, purge, replicator, origin
//	POST /v1/dev/origins/{region}/stop|start only the region's origin (MinIO): its edges fail over

type ClusterJSON struct {
	Regions    []RegionJSON `json:"regions"`
	PurgeToken string       `json:"purge_token"`
	// EdgeAdminToken is the token of every edge's /purge and /debug/pprof.
	EdgeAdminToken string `json:"edge_admin_token"`
	// Protected is the protected stream's master playlist, with its token in the path.
	Protected string     `json:"protected"`
	Sample    string     `json:"sample"`
	Bucket    string     `json:"bucket"`
	Upload    UploadJSON `json:"upload"`
}

type RegionJSON struct {
	Name     string     `json:"name"`
	Steering string     `json:"steering"`
	Purge    string     `json:"purge"`
	Origin   string     `json:"origin"`
	NATS     string     `json:"nats"`
	Up       bool       `json:"up"`
	Edges    []EdgeJSON `json:"edges"`
}

type EdgeJSON struct {
	Name  string `json:"name"`
	URL   string `json:"url"`
	Admin string `json:"admin"`
	Up    bool   `json:"up"`
}

// UploadJSON is where, and as whom, to write content: the upload user's credentials (it can
// write objects into the bucket, nothing more), never MinIO's root ones.
type UploadJSON struct {
	Endpoint  string `json:"endpoint"`
	AccessKey string `json:"access_key"`
	SecretKey string `json:"secret_key"`
}

func (c *cluster) describe() ClusterJSON {
	out := ClusterJSON{PurgeToken: c.sec.PurgeToken, EdgeAdminToken: c.sec.EdgeAdminToken, Sample: "/" + samplePrefix + "master.m3u8", Protected: c.sign.playPath(), Regions: []RegionJSON{}}
	for i, r := range c.regions {
		rj := RegionJSON{Name: r.name, Steering: c.tls.scheme() + c.layout.steering(i), Purge: "http://" + c.layout.purge(i),
			Origin: r.minio.Endpoint(), NATS: r.natsURL, Up: r.isUp()}
		for j, e := range r.edges {
			rj.Edges = append(rj.Edges, EdgeJSON{Name: e.name, URL: c.tls.scheme() + c.layout.edge(i, j),
				Admin: "http://" + c.layout.edgeAdm(i, j), Up: e.running()})
		}
		out.Regions = append(out.Regions, rj)
		if i == 0 {
			out.Bucket = r.bucket
			out.Upload = UploadJSON{Endpoint: r.minio.Endpoint(), AccessKey: uploadUser, SecretKey: c.sec.UploadOrigin}
		}
	}
	return out
}

// controlHandler is the control API. Everything but the help page needs the control token (the
// cluster's description hands out the other tokens and credentials), and what changes the
// cluster must be JSON and not cross-site, so that a web page open in a browser on this machine
// cannot drive it, nor read it through a rebound DNS name.
func (c *cluster) controlHandler() (http.Handler, error) {
	g, err := adminguard.New(adminguard.Config{Tokens: []string{c.sec.ControlToken}, Realm: "duet-dev",
		Reply: func(w http.ResponseWriter, status int, reason string) {
			writeJSON(w, status, map[string]string{"error": reason + " (the control token is in duet dev's banner and in " +
				filepath.Join(c.dir, secretsFile) + ")"})
		}})
	if err != nil {
		return nil, fmt.Errorf("control API: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/dev/cluster", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, c.describe())
	})
	mux.HandleFunc("POST /v1/dev/edges/{name}/{op}", func(w http.ResponseWriter, r *http.Request) {
		p := c.findEdge(r.PathValue("name"))
		if p == nil {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no edge named " + r.PathValue("name") + " (GET /v1/dev/cluster lists them)"})
			return
		}
		switch r.PathValue("op") {
		case "stop":
			p.stop(r.URL.Query().Get("graceful") == "")
		case "start":
			if err := p.start(r.Context()); err != nil {
				writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
				return
			}
		default:
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "use stop or start"})
			return
		}
		c.log.Info("control", "edge", p.name, "op", r.PathValue("op"))
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	})
	mux.HandleFunc("POST /v1/dev/regions/{name}/{op}", func(w http.ResponseWriter, r *http.Request) {
		reg := c.findRegion(r.PathValue("name"))
		if reg == nil {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no region named " + r.PathValue("name") + " (GET /v1/dev/cluster lists them)"})
			return
		}
		switch r.PathValue("op") {
		case "stop":
			c.stopRegion(reg, r.URL.Query().Get("graceful") == "")
		case "start":
			if err := c.startRegion(r.Context(), reg); err != nil {
				writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
				return
			}
		default:
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "use stop or start"})
			return
		}
		c.log.Info("control", "region", reg.name, "op", r.PathValue("op"))
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	})
	mux.HandleFunc("POST /v1/dev/origins/{name}/{op}", func(w http.ResponseWriter, r *http.Request) {
		reg := c.findRegion(r.PathValue("name"))
		if reg == nil {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no region named " + r.PathValue("name") + " (GET /v1/dev/cluster lists them)"})
			return
		}
		var err error
		switch r.PathValue("op") {
		case "stop":
			err = reg.minio.Stop()
		case "start":
			err = reg.minio.Restart(r.Context())
		default:
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "use stop or start"})
			return
		}
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		c.log.Info("control", "origin", reg.name, "op", r.PathValue("op"))
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	})
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte(strings.TrimSpace(`
duet dev control API
  GET  /v1/dev/cluster
  POST /v1/dev/edges/{name}/stop[?graceful=1]   POST /v1/dev/edges/{name}/start
  POST /v1/dev/regions/{name}/stop[?graceful=1] POST /v1/dev/regions/{name}/start
  POST /v1/dev/origins/{region}/stop             POST /v1/dev/origins/{region}/start
Send Authorization: Bearer <control token> (printed by duet dev), and Content-Type: application/json with a POST.`) + "\n"))
	})
	outer := http.NewServeMux()
	outer.Handle("/v1/", g.Token(mux))
	outer.Handle("/", g.Browser(mux))
	return outer, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
