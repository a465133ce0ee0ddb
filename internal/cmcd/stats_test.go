package cmcd

import (
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestStatsBounded: content ids beyond MaxContentLabels share one label, and the summary tells
// sessions, rebuffering sessions and medians.
func TestStatsBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	now := time.Unix(1000, 0)
	s := NewStats(reg, func() time.Time { return now.Add(time.Second) })
	for i := range MaxContentLabels + 20 {
		var d Data
		d.Reset()
		d.ContentID, d.ObjectType, d.SessionID = "c"+strconv.Itoa(i), Video, "s"+strconv.Itoa(i%3)
		d.BufferLength, d.Throughput = int64(1000*(i%3+1)), 5000
		d.Starved = i%3 == 0
		s.Observe(&d, now)
	}
	if n := testutil.CollectAndCount(s.requests); n != MaxContentLabels+1 {
		t.Fatalf("%d request series, want %d", n, MaxContentLabels+1)
	}
	if v := testutil.ToFloat64(s.requests.WithLabelValues("other", Video)); v != 20 {
		t.Fatalf("other: %v", v)
	}
	if v := testutil.ToFloat64(prometheus.Collector(gauge(t, reg, "duet_cmcd_rebuffering_sessions"))); v != 1 {
		t.Fatalf("rebuffering sessions gauge %v", v)
	}
	sum := s.Summary(now.Add(time.Second))
	if sum == nil || sum.Sessions != 3 || sum.Rebuffering != 1 || sum.MedianBufferMS != 2000 || sum.MedianThroughputKbps != 5000 || len(sum.Recent) != 3 {
		t.Fatalf("summary %+v", sum)
	}
	if s.Summary(now.Add(SessionWindow+2*time.Second)) != nil {
		t.Fatal("sessions outlived the window")
	}
}

// gauge finds a gauge's value in reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) prometheus.Gauge {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "copy", Help: "copy"})
			g.Set(mf.GetMetric()[0].GetGauge().GetValue())
			return g
		}
	}
	t.Fatalf("no %s", name)
	return nil
}
