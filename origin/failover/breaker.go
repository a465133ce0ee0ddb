package failover

import (
	"sync"
	"time"
)

// State is a member's circuit-breaker state.
type State string

// Breaker states, as Health reports them.
const (
	// StateClosed: the member takes fetches.
	StateClosed State = "closed"
	// StateHalfOpen: the cool-down has passed and one real fetch (the probe) is testing the
	// member; other fetches skip it until the probe has its answer.
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

// breaker is one member's circuit breaker. There is no background prober: when the cool-down has
// passed, the next real fetch that reaches the member is the probe. That needs no goroutine and
// tests the member with exactly the requests viewers need; the price is that the probe's viewer
// waits for one failed attempt (a refused connection is quick; a timeout costs origin.timeout)
// before the fetch moves on to the next member.
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

// acquire asks whether a fetch may use the member now. An open breaker whose cool-down has passed
// turns half-open and grants the probe; while the probe is in flight, others are denied.
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
		b.openUntil = now.Add(b.cooldown)
		b.setState(StateOpen, now)
	case b.state == StateClosed && b.failures >= b.threshold:
		b.cooldown = b.baseCool
		b.openUntil = now.Add(b.cooldown)
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
