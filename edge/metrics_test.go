package edge

import "testing"

// testutilCounter sums every series of a metric family.
func testutilCounter(t testing.TB, h *harness, name string) float64 {
	t.Helper()
	mfs, err := h.srv.gather.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var total float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.GetCounter() != nil:
				total += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				total += m.GetGauge().GetValue()
			}
		}
	}
	return total
}
