package failover

import (
	"math/rand/v2"
	"sync"
	"time"
)

// State is a member's circuit-breaker state.
type State string

// Breaker states, as Health reports them.
const (
	// StateClosed: the member takes fetches.
	StateClosed State = "closed"
	// StateHalfOpen: the cool-down has passed and one probe (a HEAD of the path a fetch asked
	// for, sent in the background) is testing the member; fetches skip it until the probe has
	// its answer.
	StateHalfOpen State = "half-open"
	// StateOpen: the member failed too often in a row and is skipped until its cool-down ends.
	StateOpen State = "open"
)

// gaugeValue is the value of duet_edge_origin_breaker_state for a state.
func (s State) gaugeValue() float64 {
	switch s {
	case StateHalfOpen:
		return 1
	case StateOpen:
		return 2
	}
	return 0
}

// breaker is one member's circuit breaker. There is no prober running on its own: when the
// cool-down has passed, the next fetch that reaches the member starts the probe, a HEAD of that
// fetch's path, in the background, and goes on to the next member without waiting for it. So a
// member is tested only while there is traffic for it, with a path viewers want, and no viewer
// waits for a dead member's refused connection or timeout. The cool-down is short, jittered (so
// that a fleet of edges does not probe in step) and capped, so that a member that answers again
// is back in rotation within about the cap (Group's DefaultMaxCooldown: 2s).
type breaker struct {
	threshold  int           // consecutive failures that open the breaker
	baseCool   time.Duration // first cool-down
	maxCool    time.Duration // cool-down cap while probes keep failing
	onChange   func(State)   // called with mu held, after every state change
	mu         sync.Mutex    // guards the fields below
	state      State
	failures   int           // consecutive failures
	cooldown   time.Duration // the current (possibly doubled) cool-down
	openUntil  time.Time     // when an open breaker lets a probe through
	probing    bool          // a half-open probe is in flight
	lastErr    string
	lastChange time.Time
}

func newBreaker(threshold int, cool, maxCool time.Duration, now time.Time, onChange func(State)) *breaker {
	return &breaker{threshold: threshold, baseCool: cool, maxCool: maxCool, onChange: onChange,
		state: StateClosed, cooldown: cool, lastChange: now}
}

// permit is what acquire grants.
type permit int8

const (
	denied permit = iota
	normal        // a closed member
	probe         // the one half-open probe
	forced        // every member is open: tried anyway
)

// jitter is a cool-down of d drawn from [d/2, d]: edges that lost a member together do not probe
// it together.
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d-d/2+1)
}

// acquire asks whether a fetch may use the member now. An open breaker whose cool-down has passed
// turns half-open and grants the probe (which the caller sends in the background, see Group.try);
// while the probe is in flight, others are denied.
func (b *breaker) acquire(now time.Time) permit {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case StateClosed:
		return normal
	case StateOpen:
		if now.Before(b.openUntil) {
			return denied
		}
		b.setState(StateHalfOpen, now)
	}
	if b.probing {
		return denied
	}
	b.probing = true
	return probe
}

// success records an answer from the member (any status below 500): it closes the breaker.
func (b *breaker) success(p permit, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p == probe {
		b.probing = false
	}
	b.failures = 0
	if b.state != StateClosed {
		b.cooldown = b.baseCool
		b.setState(StateClosed, now)
	}
}

// failure records a connection error, timeout or 5xx. A closed breaker opens after threshold
// failures in a row; a failed probe reopens it with a doubled cool-down (up to maxCool); a failed
// forced attempt (every member open) only counts, so that it does not push the next probe back.
func (b *breaker) failure(p permit, now time.Time, msg string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures++
	b.lastErr = msg
	switch {
	case p == probe:
		b.probing = false
		b.cooldown = min(2*b.cooldown, b.maxCool)
		b.openUntil = now.Add(jitter(b.cooldown))
		b.setState(StateOpen, now)
	case b.state == StateClosed && b.failures >= b.threshold:
		b.cooldown = b.baseCool
		b.openUntil = now.Add(jitter(b.cooldown))
		b.setState(StateOpen, now)
	}
}

// release gives a probe back without a verdict (the caller cancelled): the next fetch probes.
func (b *breaker) release(p permit) {
	if p != probe {
		return
	}
	b.mu.Lock()
	b.probing = false
	b.mu.Unlock()
}

// setState changes the state; b.mu must be held.
func (b *breaker) setState(s State, now time.Time) {
	if s == b.state {
		return
	}
	b.state, b.lastChange = s, now
	if b.onChange != nil {
		b.onChange(s)
	}
}

// snapshot returns the state for Health; b.mu must not be held.
func (b *breaker) snapshot() (s State, failures int, lastErr string, lastChange time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state, b.failures, b.lastErr, b.lastChange
}
