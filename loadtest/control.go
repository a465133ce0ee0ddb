package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Cluster is `duet dev`'s description of itself: GET {control}/v1/dev/cluster.
type Cluster struct {
	Regions    []Region `json:"regions"`
	PurgeToken string   `json:"purge_token"`
	// Sample is the path of the sample stream's multivariant playlist.
	Sample string `json:"sample"`
	// Bucket is the origin bucket; object keys are request paths without the leading "/".
	Bucket string `json:"bucket"`
	Upload Upload `json:"upload"`
}

// Region is one region of the dev cluster.
type Region struct {
	Name     string `json:"name"`
	Steering string `json:"steering"`
	Purge    string `json:"purge"`
	Origin   string `json:"origin"`
	Up       bool   `json:"up"`
	Edges    []Edge `json:"edges"`
}

// Edge is one edge of a region.
type Edge struct {
	Name  string `json:"name"`
	URL   string `json:"url"`
	Admin string `json:"admin"`
	Up    bool   `json:"up"`
}

// Upload is where the load test writes objects (S3, path-style).
type Upload struct {
	Endpoint  string `json:"endpoint"`
	AccessKey string `json:"access_key"`
	SecretKey string `json:"secret_key"`
}

// check applies the guard to every URL of the cluster.
func (c *Cluster) check(g Guard) error {
	if len(c.Regions) == 0 {
		return fmt.Errorf("%w: the cluster has no regions", ErrConfig)
	}
	for _, r := range c.Regions {
		for what, u := range map[string]string{"steering": r.Steering, "purge": r.Purge, "origin": r.Origin} {
			if u == "" {
				continue
			}
			if err := g.Check("region "+r.Name+" "+what, u); err != nil {
				return err
			}
		}
		for _, e := range r.Edges {
			if err := g.Check("edge "+e.Name, e.URL); err != nil {
				return err
			}
			if e.Admin != "" {
				if err := g.Check("edge "+e.Name+" admin", e.Admin); err != nil {
					return err
				}
			}
		}
	}
	if c.Upload.Endpoint != "" {
		return g.Check("upload endpoint", c.Upload.Endpoint)
	}
	return nil
}

// edgeByURL maps an edge's base URL to its name and region.
func (c *Cluster) edgeByURL() map[string][2]string {
	m := map[string][2]string{}
	for _, r := range c.Regions {
		for _, e := range r.Edges {
			m[strings.TrimRight(e.URL, "/")] = [2]string{e.Name, r.Name}
		}
	}
	return m
}

// Control is what the scenarios need from `duet dev`'s control API.
type Control interface {
	Cluster(ctx context.Context) (*Cluster, error)
	// StopEdge and StartEdge stop and start one edge by name; StopRegion and StartRegion a
	// whole region (its edges, steering and origin).
	StopEdge(ctx context.Context, name string) error
	StartEdge(ctx context.Context, name string) error
	StopRegion(ctx context.Context, name string) error
	StartRegion(ctx context.Context, name string) error
}

// HTTPControl is the Control client for `duet dev`'s control API.
type HTTPControl struct {
	base, token string
	client      *http.Client
}

var _ Control = (*HTTPControl)(nil)

// NewHTTPControl returns a client for the control API at base (http://127.0.0.1:7070) that
// authenticates with token.
func NewHTTPControl(base, token string, client *http.Client) *HTTPControl {
	return &HTTPControl{base: strings.TrimRight(base, "/"), token: token, client: client}
}

// Cluster reads the cluster's description.
func (c *HTTPControl) Cluster(ctx context.Context) (*Cluster, error) {
	var cl Cluster
	if err := c.do(ctx, http.MethodGet, "/v1/dev/cluster", &cl); err != nil {
		return nil, err
	}
	return &cl, nil
}

func (c *HTTPControl) StopEdge(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodPost, "/v1/dev/edges/"+name+"/stop", nil)
}

func (c *HTTPControl) StartEdge(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodPost, "/v1/dev/edges/"+name+"/start", nil)
}

func (c *HTTPControl) StopRegion(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodPost, "/v1/dev/regions/"+name+"/stop", nil)
}

func (c *HTTPControl) StartRegion(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodPost, "/v1/dev/regions/"+name+"/start", nil)
}

func (c *HTTPControl) do(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return fmt.Errorf("%w: control URL %q: %w", ErrConfig, c.base, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: %s %s: %w (is `duet dev` running? start it with `make run`)", ErrUnreachable, method, c.base+path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, c.base+path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s %s: %s: %s", method, c.base+path, resp.Status, e.Error)
		}
		return fmt.Errorf("%s %s: %s: %s", method, c.base+path, resp.Status, bytes.TrimSpace(body))
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return errors.Join(fmt.Errorf("%s %s: the answer is not the cluster JSON", method, c.base+path), err)
	}
	return nil
}
