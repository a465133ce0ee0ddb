package devcluster

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
)

// layout is where every part of the dev cluster listens. Ports are the well-known defaults plus
// an offset, so two clusters (or a test) can run side by side.
type layout struct {
	offset int
}

func (l layout) addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port+l.offset) }

// Region i's parts; edge j of region i.
func (l layout) control() string        { return l.addr(7070) }
func (l layout) nats(i int) int         { return 4222 + i + l.offset }
func (l layout) leaf() int              { return 7422 + l.offset }
func (l layout) minio(i int) string     { return l.addr(9000 + 10*i) }
func (l layout) steering(i int) string  { return l.addr(8400 + i) }
func (l layout) purge(i int) string     { return l.addr(8500 + i) }
func (l layout) replicate(i int) string { return l.addr(9180 + i) }

// Edges differ by address, not port: HLS content steering moves players between pathways by
// replacing the host name only (URI-REPLACEMENT HOST), so every edge listens on the same port, each
// on its own loopback address (127.0.0.0/8 is all loopback on Linux): region i, edge j is
// 127.0.(10+i).(1+j).
func (l layout) edgeIP(i, j int) string { return fmt.Sprintf("127.0.%d.%d", 10+i, 1+j) }
func (l layout) edge(i, j int) string   { return l.edgeIP(i, j) + ":" + strconv.Itoa(8080+l.offset) }
func (l layout) edgeAdm(i, j int) string {
	return l.edgeIP(i, j) + ":" + strconv.Itoa(9090+l.offset)
}

// all lists every address the cluster will listen on, with what it is for (for the "port in use"
// check before anything starts).
func (l layout) all(regions, edges int) map[string]string {
	m := map[string]string{l.control(): "control API", l.addr(7422): "NATS leafnode link"}
	for i := range regions {
		m[l.addr(4222+i)] = fmt.Sprintf("NATS of region %d", i+1)
		m[l.minio(i)] = fmt.Sprintf("MinIO of region %d", i+1)
		m[l.steering(i)] = fmt.Sprintf("steering of region %d", i+1)
		m[l.purge(i)] = fmt.Sprintf("purge API of region %d", i+1)
		m[l.replicate(i)] = fmt.Sprintf("replicator of region %d", i+1)
		for j := range edges {
			m[l.edge(i, j)] = fmt.Sprintf("edge %d of region %d", j+1, i+1)
			m[l.edgeAdm(i, j)] = fmt.Sprintf("admin of edge %d of region %d", j+1, i+1)
		}
	}
	return m
}

// PortsHelp says which ports the cluster listens on with offset added, for `duet dev --help`.
func PortsHelp(offset int) string {
	l := layout{offset: offset}
	p := func(port int) string { return strconv.Itoa(port + offset) }
	return fmt.Sprintf("control API %s; edges %s (admin %s), each on its own 127.0.<10+region>.<edge> address; "+
		"NATS %s.. (leafnode link %s); steering %s..; purge API %s..; replicators %s..; MinIO %s, %s, ... (its console on a free port)",
		l.control(), p(8080), p(9090), p(4222), p(7422), p(8400), p(8500), p(9180), p(9000), p(9010))
}

// checkPorts refuses a layout that puts a service on a port browsers refuse to connect to (the
// player and the status page would fail with no hint why), or outside 1-65535.
func (l layout) checkPorts(regions, edges int) error {
	addrs := l.all(regions, edges)
	var bad []string
	for _, a := range slices.Sorted(maps.Keys(addrs)) {
		_, ps, err := net.SplitHostPort(a)
		if err != nil {
			return fmt.Errorf("address %s of %s: %w", a, addrs[a], err)
		}
		port, err := strconv.Atoi(ps)
		if err != nil || port < 1 || port > 65535 {
			return fmt.Errorf("--port-offset %d puts the %s on port %s, outside 1-65535: choose a smaller offset", l.offset, addrs[a], ps)
		}
		if slices.Contains(browserBlockedPorts, port) {
			bad = append(bad, fmt.Sprintf("the %s on port %d", addrs[a], port))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("--port-offset %d puts %s, which browsers refuse to connect to (ERR_UNSAFE_PORT): choose another offset, for example %d",
		l.offset, strings.Join(bad, " and "), l.safeOffset(regions, edges))
}

// safeOffset is the nearest offset above l's (in steps of 100) that puts no service on a blocked
// port.
func (l layout) safeOffset(regions, edges int) int {
	for o := (l.offset/100 + 1) * 100; o < 50000; o += 100 {
		if (layout{offset: o}).checkPorts(regions, edges) == nil {
			return o
		}
	}
	return 0
}

// browserBlockedPorts are the "bad ports" of the Fetch standard (fetch.spec.whatwg.org, "port
// blocking"), which Chrome, Edge, Firefox and Safari refuse to connect to.
var browserBlockedPorts = []int{
	1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101, 102,
	103, 104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179, 389, 427, 465,
	512, 513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563, 587, 601, 636, 989, 990, 993,
	995, 1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566, 6665, 6666, 6667, 6668,
	6669, 6679, 6697, 10080,
}
