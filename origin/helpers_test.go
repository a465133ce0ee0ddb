package origin

import (
	"context"
	"io"
	"testing"
)

type fetcher interface {
	Fetch(ctx context.Context, r *Request) (*Response, error)
}

// readAll reads a response body to its end and closes it.
func readAll(t *testing.T, resp *Response) []byte {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return b
}

func fetchOK(t *testing.T, o fetcher, r *Request) *Response {
	t.Helper()
	resp, err := o.Fetch(t.Context(), r)
	if err != nil {
		t.Fatalf("Fetch(%+v): %v", r, err)
	}
	return resp
}
