// Package httpdate parses HTTP-date values (RFC 9110 §5.6.7) strictly: exactly one of the three
// formats the grammar allows, with its fixed spacing and digit counts, and nothing else. Go's
// http.ParseTime is more lenient (it accepts one-digit hours, for example), which matters where
// RFC 9111 §5.3 makes an invalid date mean "already expired".
package httpdate

import "time"

var days = [...]string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}
var longDays = [...]string{"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"}
var months = [...]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}

// Parse reads an HTTP-date: the IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT", or one of the
// obsolete forms that RFC 9110 §5.6.7 says a recipient MUST accept, rfc850-date
// "Sunday, 06-Nov-94 08:49:37 GMT" and asctime-date "Sun Nov  6 08:49:37 1994". now resolves
// rfc850-date's two-digit year: a date more than 50 years after now is read as the most
// recent past year with the same last two digits (RFC 9110 §5.6.7). The day name must be a
// valid name but is not checked against the date. ok is false for anything else, including
// surrounding whitespace (the field parser trims that) and impossible dates (31 Feb, 24:00:00;
// a leap second, 60, is allowed and read as the next second).
func Parse(s string, now time.Time) (t time.Time, ok bool) {
	switch {
	case len(s) == 29 && s[3] == ',':
		return imf(s)
	case len(s) == 24 && s[3] == ' ':
		return asctime(s)
	}
	return rfc850(s, now)
}

// imf parses "Sun, 06 Nov 1994 08:49:37 GMT".
func imf(s string) (time.Time, bool) {
	if !oneOf(s[0:3], days[:]) || s[4] != ' ' || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' || s[25:] != " GMT" {
		return time.Time{}, false
	}
	day, ok1 := digits(s[5:7])
	mon := index(s[8:11], months[:])
	year, ok2 := digits(s[12:16])
	if !ok1 || !ok2 || mon < 0 {
		return time.Time{}, false
	}
	return build(year, mon, day, s[17:25])
}

// asctime parses "Sun Nov  6 08:49:37 1994" (the day is space-padded).
func asctime(s string) (time.Time, bool) {
	if !oneOf(s[0:3], days[:]) || s[7] != ' ' || s[10] != ' ' || s[19] != ' ' {
		return time.Time{}, false
	}
	mon := index(s[4:7], months[:])
	var day int
	var ok1 bool
	if s[8] == ' ' {
		day, ok1 = digits(s[9:10])
	} else {
		day, ok1 = digits(s[8:10])
	}
	year, ok2 := digits(s[20:24])
	if !ok1 || !ok2 || mon < 0 {
		return time.Time{}, false
	}
	return build(year, mon, day, s[11:19])
}

// rfc850 parses "Sunday, 06-Nov-94 08:49:37 GMT".
func rfc850(s string, now time.Time) (time.Time, bool) {
	i := 0
	for i < len(s) && s[i] != ',' {
		i++
	}
	if i == len(s) || !oneOf(s[:i], longDays[:]) {
		return time.Time{}, false
	}
	r := s[i:]
	if len(r) != 24 || r[1] != ' ' || r[4] != '-' || r[8] != '-' || r[11] != ' ' || r[20:] != " GMT" {
		return time.Time{}, false
	}
	day, ok1 := digits(r[2:4])
	mon := index(r[5:8], months[:])
	yy, ok2 := digits(r[9:11])
	if !ok1 || !ok2 || mon < 0 {
		return time.Time{}, false
	}
	now = now.UTC()
	year := now.Year() - now.Year()%100 + yy
	t, ok := build(year, mon, day, r[12:20])
	if ok && t.After(now.AddDate(50, 0, 0)) {
		t, ok = build(year-100, mon, day, r[12:20])
	}
	return t, ok
}

// build checks the fields and parses "08:49:37".
func build(year, mon, day int, hms string) (time.Time, bool) {
	if hms[2] != ':' || hms[5] != ':' {
		return time.Time{}, false
	}
	h, ok1 := digits(hms[0:2])
	m, ok2 := digits(hms[3:5])
	sec, ok3 := digits(hms[6:8])
	if !ok1 || !ok2 || !ok3 || h > 23 || m > 59 || sec > 60 || day < 1 {
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(mon+1), day, h, m, sec, 0, time.UTC)
	if t.Day() != day && sec != 60 || day > 31 {
		return time.Time{}, false // 31 Feb normalises to March
	}
	if sec == 60 && time.Date(year, time.Month(mon+1), day, 0, 0, 0, 0, time.UTC).Day() != day {
		return time.Time{}, false
	}
	return t, true
}

func digits(s string) (int, bool) {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, len(s) > 0
}

func index(s string, list []string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

func oneOf(s string, list []string) bool { return index(s, list) >= 0 }
