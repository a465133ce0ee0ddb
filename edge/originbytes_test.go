package edge

import (
	"testing"
)

// s3EdgeConfig makes an edge config whose origin is the S3 env's bucket, as `duet edge` would.
func s3EdgeConfig(env *s3env) func(*Config) {
	return func(c *Config) {
		c.Origin = OriginConfig{Type: "s3", Endpoint: env.minio.Endpoint(), Bucket: env.bucket, Timeout: c.Origin.Timeout}
	}
}

// TestS3QueryNotInKey: with an S3 origin a query string selects nothing, so by default it is not
// part of the cache key: new query strings on one object cost one origin fetch. On 718ea16 each
// new query string fetched the whole object again.
func TestS3QueryNotInKey(t *testing.T) {
	t.Parallel()
	env := newS3Env(t)
	body := randomBytes(64<<10, 7)
	env.put(t, "obj.bin", body, "max-age=600", nil)
	h := startEdge(t, env.origin, s3EdgeConfig(env))
	for i, q := range []string{"?a=1", "?token=xyz&exp=99", "?session=42"} {
		resp, got := h.get("/obj.bin" + q)
		if resp.StatusCode != 200 || sum(got) != sum(body) {
			t.Fatalf("request %d: status %d, %d bytes", i, resp.StatusCode, len(got))
		}
		if i == 0 {
			h.waitCached("/obj.bin")
		} else {
			expect(t, resp, 200, "HIT")
		}
	}
	if n := h.origin.fetches("/obj.bin"); n != 1 {
		t.Fatalf("three query strings cost %d origin fetches, want 1", n)
	}
	if q := h.origin.last().Query; q != "" {
		t.Fatalf("S3 origin was asked with query %q", q)
	}
}

func TestQueryDroppedDefault(t *testing.T) {
	yes, no := true, false
	for _, c := range []struct {
		name string
		typ  string
		fb   []string
		set  *bool
		want bool
	}{
		{"s3", "s3", nil, nil, true},
		{"s3 set false", "s3", nil, &no, false},
		{"http", "http", nil, nil, false},
		{"http set true", "http", nil, &yes, true},
		{"s3 with s3 fallback", "s3", []string{"s3"}, nil, true},
		{"s3 with http fallback", "s3", []string{"s3", "http"}, nil, false},
	} {
		cfg := DefaultConfig()
		cfg.Origin.Type = c.typ
		for _, f := range c.fb {
			cfg.Origin.Fallbacks = append(cfg.Origin.Fallbacks, OriginConfig{Type: f})
		}
		cfg.Cache.DropQuery = c.set
		if got := cfg.QueryDropped(); got != c.want {
			t.Errorf("%s: query dropped %v, want %v", c.name, got, c.want)
		}
	}
}
