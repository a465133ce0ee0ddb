package devcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// proc is one role of `duet dev` running as its own process (`duet <role> --config ...`), so
// that the control API can kill it for real (SIGKILL: no drain, no goodbye heartbeat) the way a
// crashed machine would go, and start it again with the same configuration and state.
type proc struct {
	name   string   // e.g. "eu-west-1" or "steering-eu-west"
	exe    string   // the duet binary
	args   []string // after the binary
	env    []string
	log    string       // file the process's output is appended to
	health string       // URL that answers 200 once the process is ready
	client *http.Client // asks health (nil: one of waitHealthy's own)

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the running process has exited
}

// start launches the process (if it is not running) and waits, bounded by ctx and 30 s, until its
// health URL answers 200.
func (p *proc) start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.runningLocked() {
		return nil
	}
	out, err := openLog(p.log)
	if err != nil {
		return fmt.Errorf("%s: open log: %w", p.name, err)
	}
	cmd := exec.Command(p.exe, p.args...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("%s: start %s: %w", p.name, p.exe, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		out.Close()
		close(done)
	}()
	p.cmd, p.done = cmd, done
	if err := waitHealthy(ctx, p.health, p.client, done, 30*time.Second); err != nil {
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s did not become ready (its log: %s): %w", p.name, p.log, err)
	}
	return nil
}

// stop ends the process: SIGKILL when kill is set (a crash), otherwise SIGTERM and a graceful
// shutdown, with SIGKILL after 20 s. Stopping a stopped process is a no-op.
func (p *proc) stop(kill bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.runningLocked() {
		return
	}
	sig := syscall.SIGTERM
	if kill {
		sig = syscall.SIGKILL
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.runningLocked()
}

func (p *proc) runningLocked() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// waitHealthy polls url with client (nil: a plain one) until it answers 200, the process exits
// (exited closes), ctx ends or limit passes.
func waitHealthy(ctx context.Context, url string, client *http.Client, exited <-chan struct{}, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	if client == nil {
		client = &http.Client{Timeout: 2 * time.Second}
	}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return errors.New("the process exited")
		case <-ctx.Done():
			return fmt.Errorf("no 200 from %s: %w", url, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// openLog opens a role's log for appending, readable only by its owner: a role may log what it
// was given (a URL with credentials, say).
func openLog(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(0o600); err != nil { // a log from an earlier run may be wider
		f.Close()
		return nil, err
	}
	return f, nil
}
