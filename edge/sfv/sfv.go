// Package sfv parses Structured Field Values for HTTP (RFC 8941) Dictionaries, the syntax of
// CDN-Cache-Control (RFC 9213). Parsing is strict, as RFC 8941 §4.2 requires: a value that
// does not follow the grammar fails as a whole, and the caller ignores the field.
package sfv

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// ErrSyntax is wrapped by every parse error.
var ErrSyntax = errors.New("structured field syntax error")

// Token is an sf-token (RFC 8941 §3.3.4), kept apart from a String.
type Token string

// Decimal is an sf-decimal (RFC 8941 §3.3.2) in thousandths: 1.5 is Decimal(1500).
type Decimal int64

// Item is a Bare Item with its Parameters. Value is an int64 (Integer), Decimal, string
// (String), Token, []byte (Byte Sequence) or bool (Boolean).
type Item struct {
	Value  any
	Params []Param
}

// Param is one parameter; parameters keep their order, a repeated key keeps its last value in
// the first key's place (RFC 8941 §4.2.3.2).
type Param struct {
	Key   string
	Value any
}

// Member is a Dictionary member's value: an Item, or an Inner List when IsList is set (then
// Inner holds the items and Params the list's parameters).
type Member struct {
	Item
	IsList bool
	Inner  []Item
}

// DictEntry is one key of a Dictionary.
type DictEntry struct {
	Key string
	Member
}

// Dictionary is an ordered map: a repeated key keeps its last value in the first key's place.
type Dictionary []DictEntry

// Get returns the member for key.
func (d Dictionary) Get(key string) (Member, bool) {
	for _, e := range d {
		if e.Key == key {
			return e.Member, true
		}
	}
	return Member{}, false
}

// ParseDictionary parses the field lines of a Dictionary field, combined as RFC 8941 §4.2
// says (joined with commas). An empty field (no lines, or only spaces) is an error too: RFC
// 8941 §4.2 says such a field is to be ignored.
func ParseDictionary(lines ...string) (Dictionary, error) {
	p := parser{s: strings.Join(lines, ",")}
	p.skipSP()
	if p.done() {
		return nil, fmt.Errorf("%w: empty dictionary", ErrSyntax)
	}
	d, err := p.dictionary()
	if err != nil {
		return nil, err
	}
	p.skipSP()
	if !p.done() {
		return nil, p.errf("trailing characters")
	}
	return d, nil
}

type parser struct {
	s string
	i int
}

func (p *parser) done() bool { return p.i >= len(p.s) }
func (p *parser) peek() byte {
	if p.done() {
		return 0
	}
	return p.s[p.i]
}
func (p *parser) skipSP() {
	for !p.done() && p.s[p.i] == ' ' {
		p.i++
	}
}
func (p *parser) skipOWS() {
	for !p.done() && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}
func (p *parser) errf(what string) error {
	return fmt.Errorf("%w: %s at offset %d", ErrSyntax, what, p.i)
}

// dictionary is RFC 8941 §4.2.2.
func (p *parser) dictionary() (Dictionary, error) {
	var d Dictionary
	for !p.done() {
		key, err := p.key()
		if err != nil {
			return nil, err
		}
		var m Member
		if p.peek() == '=' {
			p.i++
			if m, err = p.itemOrInnerList(); err != nil {
				return nil, err
			}
		} else {
			m.Value = true
			if m.Params, err = p.params(); err != nil {
				return nil, err
			}
		}
		d = setEntry(d, key, m)
		p.skipOWS()
		if p.done() {
			return d, nil
		}
		if p.peek() != ',' {
			return nil, p.errf("expected ','")
		}
		p.i++
		p.skipOWS()
		if p.done() {
			return nil, p.errf("trailing ','")
		}
	}
	return d, nil
}

func setEntry(d Dictionary, key string, m Member) Dictionary {
	for i := range d {
		if d[i].Key == key {
			d[i].Member = m
			return d
		}
	}
	return append(d, DictEntry{Key: key, Member: m})
}

func (p *parser) itemOrInnerList() (Member, error) {
	if p.peek() == '(' {
		return p.innerList()
	}
	it, err := p.item()
	return Member{Item: it}, err
}

// innerList is RFC 8941 §4.2.1.2.
func (p *parser) innerList() (Member, error) {
	p.i++ // "("
	m := Member{IsList: true, Inner: []Item{}}
	for !p.done() {
		p.skipSP()
		if p.peek() == ')' {
			p.i++
			var err error
			m.Params, err = p.params()
			return m, err
		}
		it, err := p.item()
		if err != nil {
			return m, err
		}
		m.Inner = append(m.Inner, it)
		if c := p.peek(); c != ' ' && c != ')' {
			return m, p.errf("expected ' ' or ')' in inner list")
		}
	}
	return m, p.errf("unterminated inner list")
}

// item is RFC 8941 §4.2.3.
func (p *parser) item() (Item, error) {
	v, err := p.bareItem()
	if err != nil {
		return Item{}, err
	}
	params, err := p.params()
	return Item{Value: v, Params: params}, err
}

// params is RFC 8941 §4.2.3.2.
func (p *parser) params() ([]Param, error) {
	var ps []Param
	for p.peek() == ';' {
		p.i++
		p.skipSP()
		key, err := p.key()
		if err != nil {
			return nil, err
		}
		var v any = true
		if p.peek() == '=' {
			p.i++
			if v, err = p.bareItem(); err != nil {
				return nil, err
			}
		}
		replaced := false
		for i := range ps {
			if ps[i].Key == key {
				ps[i].Value, replaced = v, true
			}
		}
		if !replaced {
			ps = append(ps, Param{Key: key, Value: v})
		}
	}
	return ps, nil
}

// key is RFC 8941 §4.2.3.3.
func (p *parser) key() (string, error) {
	c := p.peek()
	if !(c >= 'a' && c <= 'z') && c != '*' {
		return "", p.errf("key must start with a lower-case letter or '*'")
	}
	start := p.i
	for !p.done() {
		c := p.s[p.i]
		if !(c >= 'a' && c <= 'z') && !(c >= '0' && c <= '9') && c != '_' && c != '-' && c != '.' && c != '*' {
			break
		}
		p.i++
	}
	return p.s[start:p.i], nil
}

// bareItem is RFC 8941 §4.2.3.1.
func (p *parser) bareItem() (any, error) {
	switch c := p.peek(); {
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	case c == '"':
		return p.str()
	case c == '*' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'):
		return p.token(), nil
	case c == ':':
		return p.byteSeq()
	case c == '?':
		return p.boolean()
	}
	return nil, p.errf("unrecognised item")
}

// number is RFC 8941 §4.2.4: at most 15 digits for an Integer; at most 12 integer and 3
// fractional digits for a Decimal.
func (p *parser) number() (any, error) {
	neg := false
	if p.peek() == '-' {
		neg = true
		p.i++
	}
	if c := p.peek(); c < '0' || c > '9' {
		return nil, p.errf("number without digits")
	}
	var n int64
	intDigits, fracDigits, decimal := 0, 0, false
	var frac int64
	for !p.done() {
		c := p.s[p.i]
		switch {
		case c >= '0' && c <= '9':
			if decimal {
				fracDigits++
				if fracDigits > 3 {
					return nil, p.errf("decimal with more than 3 fractional digits")
				}
				frac = frac*10 + int64(c-'0')
			} else {
				intDigits++
				if intDigits > 15 {
					return nil, p.errf("integer with more than 15 digits")
				}
				n = n*10 + int64(c-'0')
			}
		case c == '.' && !decimal:
			if intDigits > 12 {
				return nil, p.errf("decimal with more than 12 integer digits")
			}
			decimal = true
		default:
			goto end
		}
		p.i++
	}
end:
	if !decimal {
		if neg {
			n = -n
		}
		return n, nil
	}
	if fracDigits == 0 {
		return nil, p.errf("decimal ending in '.'")
	}
	for ; fracDigits < 3; fracDigits++ {
		frac *= 10
	}
	d := n*1000 + frac
	if neg {
		d = -d
	}
	return Decimal(d), nil
}

// str is RFC 8941 §4.2.5: printable ASCII, with only \" and \\ as escapes.
func (p *parser) str() (string, error) {
	p.i++ // opening quote
	var b strings.Builder
	for !p.done() {
		c := p.s[p.i]
		p.i++
		switch {
		case c == '\\':
			if p.done() {
				return "", p.errf("unterminated escape")
			}
			e := p.s[p.i]
			if e != '"' && e != '\\' {
				return "", p.errf("invalid escape")
			}
			p.i++
			b.WriteByte(e)
		case c == '"':
			return b.String(), nil
		case c < 0x20 || c > 0x7e:
			return "", p.errf("invalid character in string")
		default:
			b.WriteByte(c)
		}
	}
	return "", p.errf("unterminated string")
}

// token is RFC 8941 §4.2.6; the caller checked the first character.
func (p *parser) token() Token {
	start := p.i
	p.i++
	for !p.done() && (isTChar(p.s[p.i]) || p.s[p.i] == ':' || p.s[p.i] == '/') {
		p.i++
	}
	return Token(p.s[start:p.i])
}

// byteSeq is RFC 8941 §4.2.7.
func (p *parser) byteSeq() ([]byte, error) {
	p.i++ // ":"
	start := p.i
	for !p.done() && p.s[p.i] != ':' {
		c := p.s[p.i]
		if !(c >= 'A' && c <= 'Z') && !(c >= 'a' && c <= 'z') && !(c >= '0' && c <= '9') && c != '+' && c != '/' && c != '=' {
			return nil, p.errf("invalid character in byte sequence")
		}
		p.i++
	}
	if p.done() {
		return nil, p.errf("unterminated byte sequence")
	}
	enc := p.s[start:p.i]
	p.i++
	// RFC 8941 lets a parser accept missing padding; "=" only at the end.
	b, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		b, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(enc, "="))
		if err != nil {
			return nil, p.errf("invalid base64 in byte sequence")
		}
	}
	return b, nil
}

// boolean is RFC 8941 §4.2.8.
func (p *parser) boolean() (bool, error) {
	p.i++ // "?"
	switch p.peek() {
	case '1':
		p.i++
		return true, nil
	case '0':
		p.i++
		return false, nil
	}
	return false, p.errf("invalid boolean")
}

func isTChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
