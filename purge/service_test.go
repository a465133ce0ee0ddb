package purge

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/internal/bus/natsserver"
)

const token = "unit-test-token-0123456789"

// startService runs a purge API for region A on a real embedded NATS.
func startService(t *testing.T, opts ...ServiceOption) (api string, js jetstream.JetStream, nc *nats.Conn) {
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
	svc, err := NewService(t.Context(), cfg, nc, slog.New(slog.DiscardHandler), prometheus.NewRegistry(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
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
	req.Header.Set("Content-Type", "application/json")
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

// A purge request a web page could send (text/plain, or from another site) is refused, even
// with the token, and nothing is stored.
func TestAPIRefusesCrossSiteAndNonJSON(t *testing.T) {
	api, js, _ := startService(t)
	for name, hdr := range map[string]map[string]string{
		"text/plain":     {"Content-Type": "text/plain"},
		"no type":        {},
		"foreign origin": {"Content-Type": "application/json", "Origin": "https://evil.example"},
		"cross-site":     {"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"},
	} {
		req, _ := http.NewRequest(http.MethodPost, api+"/v1/purge", strings.NewReader(`{"urls":["/a"]}`))
		req.Header.Set("Authorization", "Bearer "+token)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 415 && resp.StatusCode != 403 {
			t.Errorf("%s: %d %s", name, resp.StatusCode, b)
		}
	}
	if n := purgeCount(t, js); n != 0 {
		t.Fatalf("%d purges stored from refused requests", n)
	}
}

// TestDuplicateIDWhileStoringFails: a retry with the same purge id that arrives while the first
// request is still being stored waits for that store; when it fails, neither request is
// answered 2xx (a 2xx means stored).
func TestDuplicateIDWhileStoringFails(t *testing.T) {
	s, err := natsserver.Start(t.Context(), natsserver.Config{Region: "A", Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	cfg := DefaultServiceConfig()
	cfg.Region, cfg.Regions = "A", []string{"A"}
	cfg.Tokens = []Token{{Name: "ops", Secret: token}}
	svc, err := NewService(t.Context(), cfg, nc, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	// The store is held, then fails: the stream is gone, and a stand-in answers the publish
	// when the test says so, with an error.
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(t.Context(), bus.PurgeStreamName("A")); err != nil {
		t.Fatal(err)
	}
	got := make(chan *nats.Msg, 4)
	stand, err := nc.Subscribe("duet.purge.A.cmd.>", func(m *nats.Msg) { got <- m })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stand.Unsubscribe() })
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(srv.Close)

	type answer struct {
		status int
		body   string
	}
	send := func(out chan<- answer) {
		status, body := post(t, srv.URL, "Bearer "+token, `{"id":"job-9","urls":["/a"]}`)
		out <- answer{status, body}
	}
	first, second := make(chan answer, 1), make(chan answer, 1)
	go send(first)
	var held *nats.Msg
	select {
	case held = <-got:
	case a := <-first:
		t.Fatalf("first request answered before its store: %d %s", a.status, a.body)
	case <-time.After(10 * time.Second):
		t.Fatal("the first request's store never reached NATS")
	}
	go send(second)
	// Give the retry every chance to be answered early (as it was before the fix); a correct
	// service holds it until the store's outcome is known.
	select {
	case a := <-second:
		t.Fatalf("retry answered %d while the first request's store was pending: %s", a.status, a.body)
	case <-time.After(time.Second):
	}
	fail := []byte(`{"error":{"code":503,"err_code":10077,"description":"test: store failed"}}`)
	if err := held.Respond(fail); err != nil {
		t.Fatal(err)
	}
	// A retry that reached the service only after the failure publishes again: fail that too.
	go func() {
		for {
			select {
			case m := <-got:
				_ = m.Respond(fail)
			case <-t.Context().Done():
				return
			}
		}
	}()
	for name, ch := range map[string]chan answer{"first": first, "retry": second} {
		select {
		case a := <-ch:
			if a.status/100 == 2 {
				t.Errorf("%s request answered %d though nothing was stored: %s", name, a.status, a.body)
			}
			if a.status != http.StatusServiceUnavailable || !strings.Contains(a.body, "not stored") {
				t.Errorf("%s request: %d %s, want 503 saying it was not stored", name, a.status, a.body)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("%s request never answered", name)
		}
	}
	// The id is free again: a later request stores it once the stream is back.
	if _, err := bus.EnsurePurgeStream(t.Context(), js, "A", nil); err != nil {
		t.Fatal(err)
	}
	_ = stand.Unsubscribe()
	if status, body := post(t, srv.URL, "Bearer "+token, `{"id":"job-9","urls":["/a"]}`); status != http.StatusAccepted {
		t.Fatalf("after the failure: %d %s", status, body)
	}
	if n := purgeCount(t, js); n != 1 {
		t.Fatalf("%d purges stored, want 1", n)
	}
}

// TestServiceClock: the service measures edges' liveness and stamps purges with its injected
// clock, so an edge whose heartbeat is older than edge_ttl by that clock is no longer expected
// to acknowledge.
func TestServiceClock(t *testing.T) {
	clk := &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	api, _, nc := startService(t, WithClock(clk.Now))
	hb, _ := json.Marshal(bus.Heartbeat{Edge: "A-1", Region: "A", URL: "http://127.0.0.1:1", State: "serving", At: clk.Now()})
	purgeOnce := func(id string) Status {
		t.Helper()
		status, body := post(t, api, "Bearer "+token, `{"id":"`+id+`","urls":["/a"]}`)
		var st Status
		if status != http.StatusAccepted || json.Unmarshal([]byte(body), &st) != nil {
			t.Fatalf("purge %s: %d %s", id, status, body)
		}
		return st
	}
	var st Status
	for i := 0; ; i++ {
		if err := nc.Publish(bus.HealthSubject("A", "A-1"), hb); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		if st = purgeOnce(fmt.Sprintf("live-%d", i)); len(st.Missing) == 1 || i == 100 {
			break
		}
		time.Sleep(20 * time.Millisecond) //nolint:forbidigo // the poll interval of a deadline loop
	}
	if !st.Accepted.Equal(clk.Now()) || len(st.Missing) != 1 || st.Missing[0] != "A-1" || st.Complete {
		t.Fatalf("with a fresh heartbeat: %+v", st)
	}
	clk.Add(DefaultServiceConfig().EdgeTTL + time.Second)
	if st = purgeOnce("later"); len(st.Missing) != 0 || !st.Complete || !st.Accepted.Equal(clk.Now()) {
		t.Fatalf("after edge_ttl without a heartbeat: %+v", st)
	}
}
