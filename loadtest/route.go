package loadtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/duetcdn/duet/internal/route"
)

// router asks steering for routes. Steerings are tried in order: a viewer's home region
// first, then the others, so that a viewer still finds its way while its region is down.
type router struct {
	client    *http.Client
	guard     Guard
	steerings []string
}

// route asks each steering in turn for path's route; the first usable answer wins.
func (r *router) route(ctx context.Context, path string, start int) (route.Answer, error) {
	var errs []error
	for i := range r.steerings {
		s := r.steerings[(start+i)%len(r.steerings)]
		rt, err := r.ask(ctx, s, path)
		if err == nil {
			return rt, nil
		}
		if ctx.Err() != nil {
			return route.Answer{}, ctx.Err()
		}
		errs = append(errs, err)
	}
	return route.Answer{}, fmt.Errorf("route %s: no steering answered: %w", path, errors.Join(errs...))
}

func (r *router) ask(ctx context.Context, steering, path string) (route.Answer, error) {
	u := strings.TrimRight(steering, "/") + "/v1/route?path=" + url.QueryEscape(path)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return route.Answer{}, fmt.Errorf("steering %s: %w", steering, err)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return route.Answer{}, fmt.Errorf("steering %s: %w", steering, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return route.Answer{}, fmt.Errorf("steering %s: read route: %w", steering, err)
	}
	if resp.StatusCode != http.StatusOK {
		return route.Answer{}, fmt.Errorf("steering %s: %s", steering, resp.Status)
	}
	rt, err := parseRoute(body)
	if err != nil {
		return route.Answer{}, fmt.Errorf("steering %s: %w", steering, err)
	}
	for _, e := range rt.Edges {
		if err := r.guard.Check("edge "+e.Name+" from steering", e.URL); err != nil {
			return route.Answer{}, err
		}
	}
	return rt, nil
}

// parseRoute decodes a route answer; a route without edges is an error.
func parseRoute(body []byte) (route.Answer, error) {
	var rt route.Answer
	if err := json.Unmarshal(body, &rt); err != nil {
		return route.Answer{}, fmt.Errorf("route answer is not JSON: %w", err)
	}
	if len(rt.Edges) == 0 {
		return route.Answer{}, errors.New("route answer names no edge")
	}
	for i, e := range rt.Edges {
		rt.Edges[i].URL = strings.TrimRight(e.URL, "/")
		if rt.Edges[i].URL == "" {
			return route.Answer{}, fmt.Errorf("route answer: edge %d has no url", i)
		}
	}
	return rt, nil
}
