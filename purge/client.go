package purge

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Client talks to a purge API (the CLI uses it).
type Client struct {
	// BaseURL is the API, e.g. http://127.0.0.1:8090.
	BaseURL string
	// Token is the bearer token.
	Token string
	// HTTP is the client to use; nil means one with a 60 s timeout.
	HTTP *http.Client
}

// APIError is a non-2xx answer, with the API's reason.
type APIError struct {
	Status int
	Reason string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("purge API answered %d: %s", e.Status, e.Reason)
}

// Purge submits a purge and returns the API's account of it.
func (c *Client) Purge(ctx context.Context, req Request) (Status, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return Status{}, err
	}
	return c.do(ctx, http.MethodPost, "/v1/purge", body)
}

// Get returns a purge's status.
func (c *Client) Get(ctx context.Context, id string) (Status, error) {
	return c.do(ctx, http.MethodGet, "/v1/purge/"+id, nil)
}

func (c *Client) do(ctx context.Context, method, path string, body []byte) (Status, error) {
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 60 * time.Second}
	}
	r, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.BaseURL, "/")+path, bytes.NewReader(body))
	if err != nil {
		return Status{}, fmt.Errorf("purge API URL %q: %w", c.BaseURL, err)
	}
	r.Header.Set("Authorization", "Bearer "+c.Token)
	r.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(r)
	if err != nil {
		return Status{}, fmt.Errorf("reach the purge API at %s: %w", c.BaseURL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return Status{}, fmt.Errorf("read the purge API's answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(b))
		}
		return Status{}, &APIError{Status: resp.StatusCode, Reason: e.Error}
	}
	var st Status
	if err := json.Unmarshal(b, &st); err != nil {
		return Status{}, fmt.Errorf("purge API answer is not a status: %w", err)
	}
	return st, nil
}
