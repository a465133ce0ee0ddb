// Package freeport opens listeners on ports that stay free to come back to: below Linux's
// ephemeral range (32768-60999), from which the kernel picks the local ports of outgoing
// connections.
//
// Test harnesses pick a port, close the probe, and start a server on it later, or stop a server
// to simulate an outage and start it again on the same port. A port from the ephemeral range
// (what ":0" gives) can meanwhile become the local end of any outgoing connection on the
// machine, even of a client dialling that very port (a TCP self-connect), and the server then
// cannot come back. A port from 10000-31999 cannot be taken that way.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
)

const (
	low   = 10000
	count = 22000 // ports low .. low+count-1, all below the ephemeral range
	tries = 100
)

// Listen listens on a random free TCP port of host below the ephemeral range, or, when none of
// its tries finds one free, on a port the kernel picks.
func Listen(host string) (net.Listener, error) {
	for range tries {
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(low+rand.IntN(count))))
		if err == nil {
			return l, nil
		}
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, fmt.Errorf("pick a free port on %s: %w", host, err)
	}
	return l, nil
}
