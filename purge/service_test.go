package purge

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/internal/bus/natsserver"
)

const token = "unit-test-token-0123456789"

// startService runs a purge API for region A on a real embedded NATS.
func startService(t *testing.T) (api string, js jetstream.JetStream, nc *nats.Conn) {
	t.Helper()
	s, err := natsserver.Start(t.Context(), natsserver.Config{Region: "A", Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	nc, err = nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	cfg := DefaultServiceConfig()
	cfg.Region, cfg.Regions = "A", []string{"A"}
	cfg.Tokens = []Token{{Name: "ops", Secret: token}}
	cfg.MaxBodyBytes = 4096
	svc, err := NewService(t.Context(), cfg, nc, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	js, err = jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return "http://" + ln.Addr().String(), js, nc
}

// purgeCount counts purge commands (not ticks) stored in region A's stream.
func purgeCount(t *testing.T, js jetstream.JetStream) int {
	t.Helper()
	st, err := js.Stream(t.Context(), bus.PurgeStreamName("A"))
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context(), jetstream.WithSubjectFilter("duet.purge.A.cmd.>"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	return n
}

func post(t *testing.T, api, auth, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, api+"/v1/purge", strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAPIRejectsBadRequestsAndPublishesNothing: every malformed or unauthorised request gets a
// 4xx with a reason, and nothing reaches the stream.
func TestAPIRejectsBadRequestsAndPublishesNothing(t *testing.T) {
	api, js, _ := startService(t)
	cases := []struct {
		auth, body string
		status     int
		want       string
	}{
		{"", `{"urls":["/a"]}`, 401, "bearer token"},
		{"Bearer wrong-token-wrong-token", `{"urls":["/a"]}`, 401, "bearer token"},
		{"Basic " + token, `{"urls":["/a"]}`, 401, "bearer token"},
		{"Bearer " + token, `{}`, 400, "at least one"},
		{"Bearer " + token, `{"urls":["/a"],"nope":true}`, 400, "unknown field"},
		{"Bearer " + token, `{"urls":["not a url"]}`, 400, "want a path"},
		{"Bearer " + token, `{"urls":["/a"],"wait":"1h"}`, 400, "at most"},
		{"Bearer " + token, `{"urls":["/` + strings.Repeat("a", 5000) + `"]}`, 413, "larger than"},
	}
	for _, c := range cases {
		status, body := post(t, api, c.auth, c.body)
		if status != c.status || !strings.Contains(body, c.want) {
			t.Errorf("%.60s: %d %s, want %d mentioning %q", c.body, status, body, c.status, c.want)
		}
	}
	if n := purgeCount(t, js); n != 0 {
		t.Fatalf("%d purges stored after only bad requests", n)
	}
	// A good one is stored once, however often it is repeated with the same id.
	for range 3 {
		status, body := post(t, api, "Bearer "+token, `{"id":"job-7","urls":["/a"]}`)
		if status != http.StatusAccepted {
			t.Fatalf("good purge: %d %s", status, body)
		}
		var st Status
		if err := json.Unmarshal([]byte(body), &st); err != nil || st.ID != "job-7" || st.By != "ops" {
			t.Fatalf("status: %s", body)
		}
	}
	if n := purgeCount(t, js); n != 1 {
		t.Fatalf("%d purges stored, want 1", n)
	}
	// GET /v1/purge/{id} needs the token too, and knows the purge.
	req, _ := http.NewRequest(http.MethodGet, api+"/v1/purge/job-7", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET status: %d", resp.StatusCode)
	}
}
