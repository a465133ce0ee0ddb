package playlist

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
)

// The parts of an MPD (ISO/IEC 23009-1) that list segments. encoding/xml matches the local
// names, whatever the namespace.
type mpdDoc struct {
	Type     string   `xml:"type,attr"`
	Duration string   `xml:"mediaPresentationDuration,attr"`
	BaseURL  []string `xml:"BaseURL"`
	Periods  []struct {
		ID       string   `xml:"id,attr"`
		Start    string   `xml:"start,attr"`
		Duration string   `xml:"duration,attr"`
		BaseURL  []string `xml:"BaseURL"`
		segInfo
		Sets []struct {
			ID      string   `xml:"id,attr"`
			BaseURL []string `xml:"BaseURL"`
			segInfo
			Reps []struct {
				ID        string   `xml:"id,attr"`
				Bandwidth int64    `xml:"bandwidth,attr"`
				BaseURL   []string `xml:"BaseURL"`
				segInfo
			} `xml:"Representation"`
		} `xml:"AdaptationSet"`
	} `xml:"Period"`
}

// segInfo is what any level (Period, AdaptationSet, Representation) may say about segments.
type segInfo struct {
	Template *segTemplate `xml:"SegmentTemplate"`
	List     *segList     `xml:"SegmentList"`
}

type segTemplate struct {
	Media          string    `xml:"media,attr"`
	Initialization string    `xml:"initialization,attr"`
	StartNumber    *int64    `xml:"startNumber,attr"`
	Timescale      *int64    `xml:"timescale,attr"`
	Duration       *int64    `xml:"duration,attr"`
	Timeline       *timeline `xml:"SegmentTimeline"`
}

type timeline struct {
	S []struct {
		T *int64 `xml:"t,attr"`
		D int64  `xml:"d,attr"`
		R int64  `xml:"r,attr"`
	} `xml:"S"`
}

type segList struct {
	Timescale *int64 `xml:"timescale,attr"`
	Duration  *int64 `xml:"duration,attr"`
	Init      *struct {
		SourceURL string `xml:"sourceURL,attr"`
		Range     string `xml:"range,attr"`
	} `xml:"Initialization"`
	URLs []struct {
		Media      string `xml:"media,attr"`
		MediaRange string `xml:"mediaRange,attr"`
	} `xml:"SegmentURL"`
}

// inherit fills the template's unset attributes from its parent's (ISO/IEC 23009-1 §5.3.9.1:
// a lower level's SegmentTemplate refines the higher one).
func (t *segTemplate) inherit(p *segTemplate) *segTemplate {
	switch {
	case t == nil:
		return p
	case p == nil:
		return t
	}
	c := *t
	if c.Media == "" {
		c.Media = p.Media
	}
	if c.Initialization == "" {
		c.Initialization = p.Initialization
	}
	if c.StartNumber == nil {
		c.StartNumber = p.StartNumber
	}
	if c.Timescale == nil {
		c.Timescale = p.Timescale
	}
	if c.Duration == nil {
		c.Duration = p.Duration
	}
	if c.Timeline == nil {
		c.Timeline = p.Timeline
	}
	return &c
}

// ParseDASH reads an MPD: one Track per Representation of each Period that lists its segments
// with a SegmentTemplate ($Number$ with @duration in a static MPD, $Number$ or $Time$ with a
// SegmentTimeline) or a SegmentList. Representations that list them otherwise are left out.
func ParseDASH(base *url.URL, body []byte) ([]Track, error) {
	var doc mpdDoc
	dec := xml.NewDecoder(bytes.NewReader(body))
	dec.Strict = true
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	live := doc.Type == "dynamic"
	total, _ := isoDuration(doc.Duration)
	mpdBase := withBase(base, doc.BaseURL)
	var tracks []Track
	lim := newLimits()
	for pi, p := range doc.Periods {
		pBase := withBase(mpdBase, p.BaseURL)
		pDur, ok := isoDuration(p.Duration)
		if !ok && len(doc.Periods) == 1 {
			start, _ := isoDuration(p.Start)
			pDur = total - start
		}
		pid := p.ID
		if pid == "" {
			pid = strconv.Itoa(pi)
		}
		for _, as := range p.Sets {
			aBase := withBase(pBase, as.BaseURL)
			for _, r := range as.Reps {
				if lim.full() {
					return tracks, nil
				}
				rBase := withBase(aBase, r.BaseURL)
				t := Track{ID: pid + "/" + r.ID, Live: live}
				var segDur float64
				switch {
				case r.List != nil || as.List != nil || p.List != nil && r.Template == nil && as.Template == nil:
					l := firstList(r.List, as.List, p.List)
					segDur = listSegments(&t, rBase, l, lim)
				default:
					tpl := r.Template.inherit(as.Template.inherit(p.Template))
					if tpl == nil || tpl.Media == "" {
						continue
					}
					var ok bool
					if segDur, ok = templateSegments(&t, rBase, tpl, r.ID, r.Bandwidth, live, pDur, lim); !ok {
						continue
					}
				}
				if r.Bandwidth > 0 && segDur > 0 {
					t.SegmentBytes = int64(math.Ceil(float64(r.Bandwidth) * segDur / 8))
				}
				tracks = append(tracks, t)
			}
		}
	}
	return tracks, nil
}

func firstList(ls ...*segList) *segList {
	for _, l := range ls {
		if l != nil {
			return l
		}
	}
	return nil
}

// withBase resolves a level's first BaseURL against its parent's; one naming another host
// makes the level's URIs unusable (nil).
func withBase(parent *url.URL, bases []string) *url.URL {
	if parent == nil || len(bases) == 0 {
		return parent
	}
	u, err := url.Parse(strings.TrimSpace(bases[0]))
	if err != nil || u.Scheme != "" || u.Host != "" || u.Opaque != "" || u.User != nil {
		return nil
	}
	return parent.ResolveReference(u)
}

// listSegments lists a SegmentList's segments (those without a mediaRange: a range of one file
// is read by range) and returns their duration in seconds (0: unknown).
func listSegments(t *Track, base *url.URL, l *segList, lim *limits) float64 {
	if base == nil {
		return 0
	}
	if l.Init != nil && l.Init.Range == "" {
		if u, ok := resolve(base, l.Init.SourceURL); ok && lim.take(u) {
			t.Init = u
		}
	}
	for _, s := range l.URLs {
		if lim.full() {
			break
		}
		if s.MediaRange != "" {
			continue
		}
		if u, ok := resolve(base, s.Media); ok && lim.take(u) {
			t.Segments = append(t.Segments, u)
		}
	}
	ts := int64(1)
	if l.Timescale != nil && *l.Timescale > 0 {
		ts = *l.Timescale
	}
	if l.Duration != nil && *l.Duration > 0 {
		return float64(*l.Duration) / float64(ts)
	}
	return 0
}

// templateSegments lists a SegmentTemplate's segments and returns their (longest) duration in
// seconds; ok is false when the template cannot be listed from the MPD alone.
func templateSegments(t *Track, base *url.URL, tpl *segTemplate, repID string, bandwidth int64, live bool, periodSecs float64, lim *limits) (float64, bool) {
	if base == nil {
		return 0, false
	}
	start := int64(1)
	if tpl.StartNumber != nil {
		start = *tpl.StartNumber
	}
	ts := int64(1)
	if tpl.Timescale != nil && *tpl.Timescale > 0 {
		ts = *tpl.Timescale
	}
	add := func(tmpl string, number, time int64) (string, bool) {
		s, ok := expand(tmpl, repID, bandwidth, number, time)
		if !ok {
			return "", false
		}
		return resolve(base, s)
	}
	if tpl.Initialization != "" {
		if u, ok := add(tpl.Initialization, start, 0); ok && lim.take(u) {
			t.Init = u
		}
	}
	var longest int64
	switch {
	case tpl.Timeline != nil:
		var now int64
		number := start
		for i, s := range tpl.Timeline.S {
			if s.D <= 0 {
				return 0, false
			}
			if s.T != nil {
				now = *s.T
			}
			longest = max(longest, s.D)
			repeat := s.R
			if repeat < 0 { // until the next S's start, or the period's end
				var end int64
				switch {
				case i+1 < len(tpl.Timeline.S) && tpl.Timeline.S[i+1].T != nil:
					end = *tpl.Timeline.S[i+1].T
				case periodSecs > 0:
					end = int64(periodSecs * float64(ts))
				default:
					end = now + s.D
				}
				repeat = max(0, (end-now+s.D-1)/s.D-1)
			}
			for r := int64(0); r <= repeat; r++ {
				if lim.full() {
					return float64(longest) / float64(ts), true
				}
				u, ok := add(tpl.Media, number, now)
				if !ok {
					return 0, false
				}
				if lim.take(u) {
					t.Segments = append(t.Segments, u)
				}
				number++
				now += s.D
			}
		}
	case tpl.Duration != nil && *tpl.Duration > 0 && !live && periodSecs > 0 &&
		!strings.Contains(tpl.Media, "$Time"):
		longest = *tpl.Duration
		n := int64(math.Ceil(periodSecs * float64(ts) / float64(longest)))
		for i := int64(0); i < n && !lim.full(); i++ {
			u, ok := add(tpl.Media, start+i, i*longest)
			if !ok {
				return 0, false
			}
			if lim.take(u) {
				t.Segments = append(t.Segments, u)
			}
		}
	default:
		return 0, false
	}
	return float64(longest) / float64(ts), true
}

// expand fills a template's identifiers (ISO/IEC 23009-1 §5.3.9.4.4): $RepresentationID$,
// $Number$, $Time$, $Bandwidth$, each of the last three with an optional %0<width>d, and $$.
// ok is false for an unknown identifier or a malformed one.
func expand(tmpl, repID string, bandwidth, number, time int64) (string, bool) {
	if len(tmpl) > MaxURILen {
		return "", false
	}
	var b strings.Builder
	for {
		i := strings.IndexByte(tmpl, '$')
		if i < 0 {
			b.WriteString(tmpl)
			return b.String(), true
		}
		b.WriteString(tmpl[:i])
		j := strings.IndexByte(tmpl[i+1:], '$')
		if j < 0 {
			return "", false
		}
		id := tmpl[i+1 : i+1+j]
		tmpl = tmpl[i+2+j:]
		name, format, hasFormat := strings.Cut(id, "%")
		var v int64
		switch name {
		case "":
			b.WriteByte('$')
			continue
		case "RepresentationID":
			if hasFormat || b.Len()+len(repID) > MaxURILen {
				return "", false
			}
			b.WriteString(repID)
			continue
		case "Number":
			v = number
		case "Time":
			v = time
		case "Bandwidth":
			v = bandwidth
		default:
			return "", false
		}
		if b.Len() > MaxURILen {
			return "", false
		}
		s := strconv.FormatInt(v, 10)
		if hasFormat {
			w, ok := width(format)
			if !ok {
				return "", false
			}
			for k := len(s); k < w; k++ {
				b.WriteByte('0')
			}
		}
		b.WriteString(s)
	}
}

// width reads the "0<width>d" of a $Number%05d$ (the only format the standard allows).
func width(f string) (int, bool) {
	if len(f) < 2 || f[len(f)-1] != 'd' {
		return 0, false
	}
	f = strings.TrimPrefix(f[:len(f)-1], "0")
	if f == "" {
		return 0, true
	}
	w, err := strconv.Atoi(f)
	if err != nil || w < 0 || w > 32 {
		return 0, false
	}
	return w, true
}

// isoDuration reads the xs:duration of an MPD ("PT1H2M3.5S", "P1DT2H"); years and months are
// not fixed lengths and are refused.
func isoDuration(s string) (float64, bool) {
	s = strings.TrimSpace(s)
	rest, ok := strings.CutPrefix(s, "P")
	if !ok || rest == "" {
		return 0, false
	}
	var secs float64
	inTime := false
	for rest != "" {
		if rest[0] == 'T' {
			inTime, rest = true, rest[1:]
			continue
		}
		i := strings.IndexAny(rest, "DHMS")
		if i <= 0 {
			return 0, false
		}
		v, err := strconv.ParseFloat(rest[:i], 64)
		if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
			return 0, false
		}
		switch unit := rest[i]; {
		case unit == 'D' && !inTime:
			secs += v * 86400
		case unit == 'H' && inTime:
			secs += v * 3600
		case unit == 'M' && inTime:
			secs += v * 60
		case unit == 'S' && inTime:
			secs += v
		default:
			return 0, false
		}
		rest = rest[i+1:]
	}
	return secs, secs < 1e9
}
