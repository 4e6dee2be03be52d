package proxy

import (
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse-proxy/gatehouse/config"
)

// refRender is templating read plainly: each "{name}" of a known
// placeholder becomes its value, any other brace is text, and a literal
// "?" right before {query} goes when the query is empty.
func refRender(s string, val map[string]string) (string, bool) {
	var out strings.Builder
	litQ := false // out ends with a literal "?"
	for i := 0; i < len(s); {
		j := strings.IndexByte(s[i:], '}')
		if s[i] != '{' || j < 0 || !config.IsPlaceholderName(s[i+1:i+j]) {
			out.WriteByte(s[i])
			litQ = s[i] == '?'
			i++
			continue
		}
		name := s[i+1 : i+j]
		v, ok := val[name]
		if !ok {
			return "", false
		}
		if name == "query" && litQ && v == "" {
			r := out.String()
			out.Reset()
			out.WriteString(r[:len(r)-1])
		}
		out.WriteString(v)
		litQ = false
		i += j + 1
	}
	return out.String(), true
}

// FuzzTemplate checks header and redirect templates against refRender:
// the same placeholders are refused, and the same value rendered.
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{"/new{path}?{query}", "{host}", "x-{request_id}-{client_ip}", "{{host}}", "{nope}", "{Host}", "?{query}",
		"{scheme}://{host}{path}", "{user}", "a?{path}{query}", "{", "}{", "{path?}{query}"} {
		f.Add(s, "example.com", "/p", "a=1")
		f.Add(s, "example.com", "/p", "")
	}
	allowed := []string{"client_ip", "host", "scheme", "request_id", "path", "query", "user"}
	f.Fuzz(func(t *testing.T, s, host, path, query string) {
		r := &http.Request{Host: host, URL: &url.URL{RawQuery: query}, RemoteAddr: "192.0.2.1:1234", Header: http.Header{}}
		v := &vars{t: &trust{}, r: r, requestID: "rid", path: path, user: "ann"}
		val := map[string]string{"client_ip": "192.0.2.1", "host": host, "scheme": "http", "request_id": "rid", "path": path, "query": query, "user": "ann"}
		want, ok := refRender(s, val)
		tm, err := parseTemplate(s, allowed)
		if (err == nil) != ok {
			t.Fatalf("parseTemplate(%q): error %v, reference ok %v", s, err, ok)
		}
		if err != nil {
			return
		}
		got := tm.value(v)
		if len(got) != 1 || got[0] != want {
			t.Fatalf("template %q: got %q, want %q", s, got, want)
		}
		// Fewer placeholders allowed: any of the others is refused.
		if _, err := parseTemplate(s, allowed[:1]); err == nil && slices.ContainsFunc(allowed[1:], func(n string) bool { return strings.Contains(s, "{"+n+"}") }) {
			t.Fatalf("parseTemplate(%q) with only %v allowed: no error", s, allowed[:1])
		}
	})
}

// FuzzHeaderOps applies a compiled set/add/remove block to two request
// headers one after the other: each comes out as remove, then set, then
// add say, and adding to the second header's fields leaves the first as
// it was (the value slices shared between requests are never appended
// into).
func FuzzHeaderOps(f *testing.F) {
	f.Add("X-A", "1", "X-A", "2", "X-B", "x-b")
	f.Add("x-id", "{request_id}", "Via", "gatehouse", "via", "X-Old")
	f.Add("Host", "{host}", "X-H", "{host}", "Host", "X-H")
	f.Fuzz(func(t *testing.T, setName, setVal, addName, addVal, removeName, pre string) {
		cfgH := &config.Headers{Set: map[string]string{setName: setVal}, Add: map[string]string{addName: addVal}, Remove: []string{removeName}}
		ops, err := compileHeaders(cfgH, []string{"host", "request_id"})
		if err != nil {
			return
		}
		val := map[string]string{"host": "example.com", "request_id": "rid"}
		run := func() (http.Header, http.Header) {
			h := http.Header{http.CanonicalHeaderKey(pre): {"p"}, http.CanonicalHeaderKey(addName): {"x"}}
			want := h.Clone()
			delete(want, http.CanonicalHeaderKey(removeName))
			if cs := http.CanonicalHeaderKey(setName); cs != "Host" {
				v, _ := refRender(setVal, val)
				want[cs] = []string{v}
			}
			v, _ := refRender(addVal, val)
			ca := http.CanonicalHeaderKey(addName)
			want[ca] = append(want[ca], v)
			r := &http.Request{Host: "example.com", URL: &url.URL{}, Header: h}
			ops.apply(h, &vars{t: &trust{}, r: r, requestID: "rid"})
			return h, want
		}
		first, want := run()
		if !reflect.DeepEqual(first, want) {
			t.Fatalf("got %v, want %v", first, want)
		}
		kept := first.Clone()
		second, _ := run()
		// What later code does to a request's header: Add to any field.
		for k := range second {
			second.Add(k, "more")
		}
		if !reflect.DeepEqual(first, kept) {
			t.Fatalf("a second request's header changed the first's: %v, was %v", first, kept)
		}
	})
}
