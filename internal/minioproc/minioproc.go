// Package minioproc runs a real MinIO server as a child process: the S3 origin of `duet dev` and of
// the integration tests. It starts the pinned binary that `make tools` installs into ./bin, waits
// until the server answers its readiness probe, and stops it (or brings it back on the same address
// and data, to simulate an origin outage).
package minioproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/duetcdn/duet/internal/freeport"
)

// Defaults for Config.
const (
	DefaultAccessKey = "duetadmin"
	DefaultSecretKey = "duetadmin-secret"

	// readyTimeout bounds how long Start and Restart wait for the readiness probe.
	readyTimeout = 30 * time.Second
	// stopGrace is how long Stop waits after SIGTERM before it kills the server.
	stopGrace = 10 * time.Second
	// tailSize is how much of the server's log is kept for error messages, in bytes.
	tailSize = 4 << 10
)

// Config describes one MinIO server.
type Config struct {
	// Bin is the path to the minio binary, usually ./bin/minio (installed by `make tools`).
	Bin string
	// Dir is the data directory; it is created if missing. Its content survives Stop and Restart.
	Dir string
	// Addr is the S3 API listen address. A port of 0 ("127.0.0.1:0") picks a free port, because
	// minio needs a concrete one; an empty host means 127.0.0.1. The console gets another free
	// port on the same host (the browser UI itself is turned off).
	Addr string
	// AccessKey and SecretKey are the root credentials (MINIO_ROOT_USER / MINIO_ROOT_PASSWORD).
	// Empty means DefaultAccessKey / DefaultSecretKey. MinIO wants at least 3 and 8 characters.
	AccessKey, SecretKey string
	// Stdout receives the server's stdout and stderr. Nil discards them (the last few KiB are
	// still kept for error messages).
	Stdout io.Writer
	// NotifyNATS, when set, gives the server a NATS notification target, so that a bucket whose
	// notification configuration names NotifyNATS.ARN() publishes its object events to NATS.
	NotifyNATS *NotifyNATS
}

// NotifyNATS is a MinIO NATS notification target (MINIO_NOTIFY_NATS_*_<ID> settings), publishing
// through JetStream.
//
// Behaviour when NATS is unreachable (read from the pinned MinIO's source and checked by
// TestNotifyNATSDown): with a queue directory, the server starts anyway, stores every event on
// disk, and replays the queue, in order, once NATS answers (and while the subject's stream is
// missing, since a JetStream publish without a stream fails). Without one (NoQueue), an event
// that cannot be published is dropped. Start therefore sets a queue directory unless told not
// to. The queue has a cost: MinIO sends queued events from a loop that looks at the queue every
// 3 s, so each event waits 0-3 s before it is published.
type NotifyNATS struct {
	// ID names the target (letters and digits); its ARN is "arn:minio:sqs::<ID>:nats". Default
	// "duet".
	ID string
	// Address is the NATS server's host:port. Required.
	Address string
	// Subject is where events are published, for Duet bus.OriginEventSubject(region). Required.
	Subject string
	// Username and Password, or Token, authenticate to NATS.
	Username, Password, Token string
	// QueueDir keeps events while NATS is unreachable (absolute path). Default: a directory
	// beside the data directory ("<Dir>.events").
	QueueDir string
	// NoQueue publishes each event at once, without the queue directory: lower latency (the
	// pinned MinIO replays its queue every 3 s, so a queued event waits 0-3 s, measured p50
	// 1.5-3 s under load), but an event is dropped when NATS cannot take it. Only with an
	// anti-entropy sweep that heals lost events (and accepting that a lost delete can be undone
	// by it once the tombstones have expired).
	NoQueue bool
	// QueueLimit is how many events the queue directory keeps at most. Default 1,000,000.
	QueueLimit int
}

// DefaultNotifyID is NotifyNATS.ID's default.
const DefaultNotifyID = "duet"

// ARN is the target's ARN, to name in a bucket's notification configuration.
func (n NotifyNATS) ARN() string {
	id := n.ID
	if id == "" {
		id = DefaultNotifyID
	}
	return "arn:minio:sqs::" + id + ":nats"
}

// env is the target's MINIO_NOTIFY_NATS_* variables; dataDir places the default queue.
func (n NotifyNATS) env(dataDir string) ([]string, error) {
	id := n.ID
	if id == "" {
		id = DefaultNotifyID
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return nil, fmt.Errorf("minio config: NotifyNATS.ID %q: use letters and digits", id)
		}
	}
	if n.Address == "" || n.Subject == "" {
		return nil, errors.New("minio config: NotifyNATS needs an Address (host:port) and a Subject")
	}
	queue := n.QueueDir
	if queue == "" {
		queue = filepath.Clean(dataDir) + ".events"
	}
	if !n.NoQueue {
		var err error
		if queue, err = filepath.Abs(queue); err != nil {
			return nil, fmt.Errorf("minio config: NotifyNATS queue dir: %w", err)
		}
		if err := os.MkdirAll(queue, 0o755); err != nil {
			return nil, fmt.Errorf("create minio event queue dir: %w", err)
		}
	}
	limit := n.QueueLimit
	if limit <= 0 {
		limit = 1_000_000
	}
	address := strings.TrimPrefix(n.Address, "nats://")
	set := func(name, v string) string { return "MINIO_NOTIFY_NATS_" + name + "_" + id + "=" + v }
	env := []string{
		set("ENABLE", "on"),
		set("ADDRESS", address),
		set("SUBJECT", n.Subject),
		set("JETSTREAM", "on"),
		set("PING_INTERVAL", "1"),
	}
	if !n.NoQueue {
		env = append(env, set("QUEUE_DIR", queue), set("QUEUE_LIMIT", strconv.Itoa(limit)))
	}
	if n.Username != "" {
		env = append(env, set("USERNAME", n.Username), set("PASSWORD", n.Password))
	}
	if n.Token != "" {
		env = append(env, set("TOKEN", n.Token))
	}
	return env, nil
}

// Server is a running (or stopped) MinIO server. Its address, credentials and data directory stay
// the same for its whole life, across Stop and Restart.
type Server struct {
	cfg         Config // defaults applied; Addr is concrete
	consoleAddr string
	notifyEnv   []string // MINIO_NOTIFY_NATS_* settings, when cfg.NotifyNATS is set

	// mu serialises Stop and Restart, and guards proc.
	mu   sync.Mutex
	proc *process // nil when stopped
}

// Start launches `minio server` and waits, bounded by ctx and by 30 s, until it answers
// GET /minio/health/ready (and /minio/health/cluster, see waitReady) with 200. ctx bounds only the start: the server runs until Stop.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.AccessKey == "" {
		cfg.AccessKey = DefaultAccessKey
	}
	if cfg.SecretKey == "" {
		cfg.SecretKey = DefaultSecretKey
	}
	if cfg.Stdout == nil {
		cfg.Stdout = io.Discard
	}
	switch {
	case cfg.Bin == "":
		return nil, errors.New("minio config: Bin is required")
	case cfg.Dir == "":
		return nil, errors.New("minio config: Dir is required")
	case len(cfg.AccessKey) < 3:
		return nil, errors.New("minio config: AccessKey must have at least 3 characters")
	case len(cfg.SecretKey) < 8:
		return nil, errors.New("minio config: SecretKey must have at least 8 characters")
	}
	if fi, err := os.Stat(cfg.Bin); err != nil || fi.IsDir() {
		return nil, fmt.Errorf("%w at %s: run \"make tools\"", ErrBinaryNotFound, cfg.Bin)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("create minio data dir: %w", err)
	}
	var notifyEnv []string
	if cfg.NotifyNATS != nil {
		var err error
		if notifyEnv, err = cfg.NotifyNATS.env(cfg.Dir); err != nil {
			return nil, err
		}
	}
	addr, console, err := pickAddrs(cfg.Addr)
	if err != nil {
		return nil, err
	}
	cfg.Addr = addr
	s := &Server{cfg: cfg, consoleAddr: console, notifyEnv: notifyEnv}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.start(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Endpoint is the S3 endpoint URL, "http://127.0.0.1:PORT".
func (s *Server) Endpoint() string { return "http://" + s.cfg.Addr }

// Addr is the S3 API address, "127.0.0.1:PORT".
func (s *Server) Addr() string { return s.cfg.Addr }

// AccessKey is the root user.
func (s *Server) AccessKey() string { return s.cfg.AccessKey }

// SecretKey is the root password.
func (s *Server) SecretKey() string { return s.cfg.SecretKey }

// Dir is the data directory.
func (s *Server) Dir() string { return s.cfg.Dir }

// Stop sends SIGTERM and waits for the server to exit, killing it after 10 s. It is idempotent and
// nil-safe. It reports an error when the server had already died on its own.
func (s *Server) Stop() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stop()
}

// Restart stops the server if it is running and starts it again on the same address and data
// directory, waiting for readiness as Start does.
func (s *Server) Restart(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.stop() // an earlier crash is not a reason to refuse to start again
	return s.start(ctx)
}

// stop ends the running process, if any. s.mu must be held.
func (s *Server) stop() error {
	p := s.proc
	if p == nil {
		return nil
	}
	s.proc = nil
	select {
	case <-p.done:
		if p.err != nil {
			return fmt.Errorf("minio at %s had exited: %w; log tail:\n%s", s.cfg.Addr, p.err, p.tail)
		}
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		_ = p.cmd.Process.Kill()
	}
	t := time.NewTimer(stopGrace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return nil
}

// start launches the process and waits for readiness. s.mu must be held and s.proc nil.
func (s *Server) start(ctx context.Context) error {
	tail := &tailBuffer{max: tailSize}
	out := io.MultiWriter(s.cfg.Stdout, tail)
	cmd := exec.Command(s.cfg.Bin, "server",
		"--address", s.cfg.Addr,
		"--console-address", s.consoleAddr,
		s.cfg.Dir)
	cmd.Env = append(environWithout("MINIO_"),
		"MINIO_ROOT_USER="+s.cfg.AccessKey,
		"MINIO_ROOT_PASSWORD="+s.cfg.SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
	)
	cmd.Env = append(cmd.Env, s.notifyEnv...)
	cmd.Stdout = out // the same writer for both: exec serialises the writes
	cmd.Stderr = out
	cmd.SysProcAttr = procAttr()
	cmd.WaitDelay = 5 * time.Second // do not hang on a pipe held open by a grandchild
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start minio %s: %w", s.cfg.Bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{}), tail: tail}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := waitReady(ctx, s.Endpoint(), p); err != nil {
		_ = cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("minio at %s: %w; log tail:\n%s", s.cfg.Addr, err, tail)
	}
	s.proc = p
	return nil
}

// process is one run of the server binary.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd.Wait has returned
	err  error         // cmd.Wait's result; read only after done is closed
	tail *tailBuffer
}

// waitReady polls the server at endpoint until it is ready, the process exits, ctx ends or
// readyTimeout passes. Ready means GET /minio/health/ready and GET /minio/health/cluster both answer
// 200: this MinIO answers "ready" with 200 even before its object layer and IAM are up (it only
// adds an "offline" status header), and S3 calls in that window fail with
// XMinioServerNotInitialized; the cluster check waits for the object layer, bucket metadata and
// IAM.
func waitReady(ctx context.Context, endpoint string, p *process) error {
	client := &http.Client{
		Timeout:   time.Second,
		Transport: &http.Transport{DisableKeepAlives: true},
	}
	defer client.CloseIdleConnections()
	deadline := time.NewTimer(readyTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if ready(ctx, client, endpoint+"/minio/health/ready") && ready(ctx, client, endpoint+"/minio/health/cluster") {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%w: exited during start: %v", ErrNotReady, p.err)
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrNotReady, ctx.Err())
		case <-deadline.C:
			return fmt.Errorf("%w: %s/minio/health/{ready,cluster} not both 200 within %s", ErrNotReady, endpoint, readyTimeout)
		case <-tick.C:
		}
	}
}

func ready(ctx context.Context, client *http.Client, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// pickAddrs turns addr into a concrete host:port (choosing a free port for port 0) and chooses a
// free console port on the same host. Both probe listeners are open at once, so the ports differ.
func pickAddrs(addr string) (api, console string, err error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", "", fmt.Errorf("minio config: Addr %q: %w", addr, err)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	var probes []net.Listener
	defer func() {
		for _, l := range probes {
			_ = l.Close()
		}
	}()
	// Ports stay free to come back to: a server stopped to simulate an outage restarts on the
	// same port (see freeport).
	free := func() (string, error) {
		l, err := freeport.Listen(host)
		if err != nil {
			return "", err
		}
		probes = append(probes, l)
		return strconv.Itoa(l.Addr().(*net.TCPAddr).Port), nil
	}
	if port == "" || port == "0" {
		if port, err = free(); err != nil {
			return "", "", err
		}
	}
	consolePort, err := free()
	if err != nil {
		return "", "", err
	}
	return net.JoinHostPort(host, port), net.JoinHostPort(host, consolePort), nil
}

// environWithout is the environment minus the variables with the given prefix, so a developer's
// own MINIO_* settings cannot change the server under test.
func environWithout(prefix string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, prefix) {
			env = append(env, kv)
		}
	}
	return env
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	mu  sync.Mutex // guards buf
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
