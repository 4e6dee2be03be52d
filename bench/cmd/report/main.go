// Command report turns the raw per-round figures bench/run.sh records into
// one table of medians, the gatehouse/peer ratios and the targets of issue 3,
// printed as text and written as markdown.
//
// Each input line is tab-separated:
//
//	round case proxy metric value p50_ms p99_ms errors
//
// with "-" for a figure that does not apply.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

// metric describes how one kind of figure is shown.
type metric struct {
	label  string
	digits int
	higher bool // a higher value is better
}

var metrics = map[string]metric{
	"rps":          {"req/s", 0, true},
	"hps":          {"full handshakes/s", 0, true},
	"hps_resumed":  {"resumed handshakes/s", 0, true},
	"mbps":         {"MB/s", 1, true},
	"cpu":          {"proxy CPU us/request", 1, false},
	"cpu_origin":   {"origin CPU us/request", 1, false},
	"rss":          {"RSS MiB", 1, false},
	"rss_base":     {"RSS MiB, no clients", 1, false},
	"start":        {"start-up ms", 0, false},
	"issue_s":      {"s to serve every name", 1, false},
	"extra_orders": {"orders beyond one per name", 0, false},
}

var (
	metricOrder = []string{"rps", "hps", "hps_resumed", "mbps", "cpu", "cpu_origin", "start", "rss", "rss_base", "issue_s", "extra_orders"}
	proxyOrder  = []string{"gatehouse", "caddy", "nginx", "direct",
		"gatehouse-1-site", "gatehouse-10k-sites", "caddy-1-site", "caddy-10k-sites",
		"gatehouse-file", "gatehouse-etcd", "gatehouse-1-instance", "gatehouse-3-instances"}
	caseNames = map[string]string{
		"1": "1. HTTP/1.1 keep-alive, 1 KiB, 64 conns",
		"2": "2. HTTP/2, 1 KiB, 32 conns x 10 streams",
		"3": "3. new TLS connection per request, 32 conns",
		"4": "4. 1 MiB responses, HTTP/1.1, 16 conns",
		"5": "5. 10,000 idle keep-alive TLS conns",
		"6": "6. 10,000-site config vs 1 site",
		"7": "7. case 1 load, local CA in file vs etcd storage",
		"8": "8. issuing N names: 1 instance vs a fleet of 3 on etcd",
	}
)

type key struct{ cas, proxy, metric string }

// agg holds the per-round figures of one key and their medians.
type agg struct {
	values, p50, p99 []float64
	errors           int
	value, m50, m99  float64
}

func main() {
	raw := flag.String("raw", "raw.tsv", "per-round figures")
	md := flag.String("md", "", "write the markdown table here too")
	info := flag.String("info", "", "file of lines describing the run, printed above the table")
	flag.Parse()

	data, err := load(*raw)
	if err != nil {
		log.Fatal(err)
	}
	var header []string
	if *info != "" {
		b, err := os.ReadFile(*info)
		if err != nil {
			log.Fatal(err)
		}
		header = strings.Split(strings.TrimSpace(string(b)), "\n")
	}
	rows := table(data)
	targets := checkTargets(data)

	printText(os.Stdout, header, rows, targets)
	if *md != "" {
		f, err := os.Create(*md)
		if err != nil {
			log.Fatal(err)
		}
		printMarkdown(f, header, rows, targets)
		if err := f.Close(); err != nil {
			log.Fatal(err)
		}
	}
}

func load(path string) (map[key]*agg, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data := map[key]*agg{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		fields := strings.Split(sc.Text(), "\t")
		if len(fields) != 8 {
			return nil, fmt.Errorf("%s:%d: want 8 fields, have %d", path, n, len(fields))
		}
		k := key{fields[1], fields[2], fields[3]}
		a := data[k]
		if a == nil {
			a = &agg{}
			data[k] = a
		}
		v, ok := num(fields[4])
		if !ok {
			continue // a failed round: its figure is not counted
		}
		a.values = append(a.values, v)
		if p, ok := num(fields[5]); ok {
			a.p50 = append(a.p50, p)
		}
		if p, ok := num(fields[6]); ok {
			a.p99 = append(a.p99, p)
		}
		if e, ok := num(fields[7]); ok {
			a.errors += int(e)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, a := range data {
		a.value, a.m50, a.m99 = median(a.values), median(a.p50), median(a.p99)
	}
	return data, nil
}

func num(s string) (float64, bool) {
	v, err := strconv.ParseFloat(s, 64)
	return v, err == nil && !math.IsNaN(v)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

var columns = []string{"case", "proxy", "figure", "median", "p50 ms", "p99 ms", "rounds", "errors", "ratio"}

func table(data map[key]*agg) [][]string {
	var cases []string
	for k := range data {
		if !slices.Contains(cases, k.cas) {
			cases = append(cases, k.cas)
		}
	}
	slices.Sort(cases)
	var rows [][]string
	for _, c := range cases {
		for _, p := range proxyOrder {
			for _, m := range metricOrder {
				a := data[key{c, p, m}]
				if a == nil {
					continue
				}
				name := caseNames[c]
				if name == "" {
					name = c
				}
				rows = append(rows, []string{
					name, p, metrics[m].label,
					format(a.value, metrics[m].digits),
					format(a.m50, 2), format(a.m99, 2),
					strconv.Itoa(len(a.values)), strconv.Itoa(a.errors),
					ratios(data, c, p, m),
				})
			}
		}
	}
	return rows
}

// ratios describes a row against its peers: gatehouse/peer for cases 1-5;
// for case 6, 10k sites/1 site and gatehouse/Caddy. The direct row (no proxy)
// is set against Caddy: the most any Go proxy could reach here.
func ratios(data map[key]*agg, c, p, m string) string {
	var parts []string
	switch p {
	case "gatehouse":
		for _, peer := range []string{"caddy", "nginx"} {
			if r, ok := ratio(data, key{c, p, m}, key{c, peer, m}); ok {
				parts = append(parts, fmt.Sprintf("%.2fx %s", r, peer))
			}
		}
	case "direct":
		if r, ok := ratio(data, key{c, p, m}, key{c, "caddy", m}); ok {
			parts = append(parts, fmt.Sprintf("no proxy: %.2fx caddy", r))
		}
	case "gatehouse-etcd":
		if r, ok := ratio(data, key{c, p, m}, key{c, "gatehouse-file", m}); ok {
			parts = append(parts, fmt.Sprintf("%.2fx file storage", r))
		}
		return strings.Join(parts, ", ")
	case "gatehouse-3-instances":
		if r, ok := ratio(data, key{c, p, m}, key{c, "gatehouse-1-instance", m}); ok {
			parts = append(parts, fmt.Sprintf("%.2fx 1 instance", r))
		}
		return strings.Join(parts, ", ")
	case "gatehouse-10k-sites", "caddy-10k-sites":
		if r, ok := ratio(data, key{c, p, m}, key{c, strings.Replace(p, "10k-sites", "1-site", 1), m}); ok {
			parts = append(parts, fmt.Sprintf("%.2fx 1 site", r))
		}
	}
	if peer, ok := strings.CutPrefix(p, "gatehouse-"); ok {
		if r, ok := ratio(data, key{c, p, m}, key{c, "caddy-" + peer, m}); ok {
			parts = append(parts, fmt.Sprintf("%.2fx caddy", r))
		}
	}
	return strings.Join(parts, ", ")
}

func ratio(data map[key]*agg, a, b key) (float64, bool) {
	x, y := data[a], data[b]
	if x == nil || y == nil || math.IsNaN(x.value) || math.IsNaN(y.value) || y.value == 0 {
		return 0, false
	}
	return x.value / y.value, true
}

func format(v float64, digits int) string {
	if math.IsNaN(v) {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', digits, 64)
}

type target struct{ text, verdict string }

func checkTargets(data map[key]*agg) []target {
	get := func(c, p, m string) (float64, float64, bool) {
		a := data[key{c, p, m}]
		if a == nil || math.IsNaN(a.value) {
			return 0, 0, false
		}
		return a.value, a.m99, true
	}
	var ts []target
	add := func(text string, ok, measured bool, figure string) {
		v := "not measured"
		if measured {
			v = "missed"
			if ok {
				v = "met"
			}
			v += " (" + figure + ")"
		}
		ts = append(ts, target{text, v})
	}
	for _, c := range []string{"1", "2", "3", "4"} {
		m := map[string]string{"1": "rps", "2": "rps", "3": "hps", "4": "mbps"}[c]
		g, g99, okG := get(c, "gatehouse", m)
		cd, c99, okC := get(c, "caddy", m)
		r := g / cd
		figure := fmt.Sprintf("%.2fx", r)
		if d, _, okD := get(c, "direct", m); okD && okC {
			figure += fmt.Sprintf("; no proxy at all: %.2fx", d/cd)
		}
		add("case "+c+": gatehouse >= 1.5x Caddy's "+metrics[m].label, r >= 1.5, okG && okC, figure)
		add("case "+c+": gatehouse p99 <= Caddy's p99", g99 <= c99, okG && okC && !math.IsNaN(g99) && !math.IsNaN(c99),
			fmt.Sprintf("%.2f ms vs %.2f ms", g99, c99))
		if c == "1" {
			n, _, okN := get(c, "nginx", m)
			add("case 1: gatehouse >= 0.6x nginx's req/s", g/n >= 0.6, okG && okN, fmt.Sprintf("%.2fx", g/n))
		}
	}
	g, _, okG := get("5", "gatehouse", "rss")
	cd, _, okC := get("5", "caddy", "rss")
	add("case 5: gatehouse RSS <= Caddy's", g <= cd, okG && okC, fmt.Sprintf("%.1f MiB vs %.1f MiB", g, cd))
	many, _, okM := get("6", "gatehouse-10k-sites", "rps")
	one, _, okO := get("6", "gatehouse-1-site", "rps")
	add("case 6: req/s with 10k sites within 10% of 1 site", many >= 0.9*one, okM && okO, fmt.Sprintf("%.2fx", many/one))
	st, _, okS := get("6", "gatehouse-10k-sites", "start")
	add("case 6: start-up with 10k sites under 2 s", st < 2000, okS, fmt.Sprintf("%.0f ms", st))
	// Issue 11.
	ge, _, okE := get("7", "gatehouse-etcd", "rps")
	gf, _, okF := get("7", "gatehouse-file", "rps")
	add("case 7: req/s with etcd storage >= 0.97x file storage (issue 11)", ge >= 0.97*gf, okE && okF, fmt.Sprintf("%.2fx", ge/gf))
	extra, _, okX := get("8", "gatehouse-3-instances", "extra_orders")
	add("case 8: the fleet makes exactly one order per name (issue 11)", extra == 0, okX, fmt.Sprintf("%.0f extra", extra))
	fl, _, okFl := get("8", "gatehouse-3-instances", "issue_s")
	one1, _, okOne := get("8", "gatehouse-1-instance", "issue_s")
	add("case 8: fleet wall time <= 1.2x one instance's (issue 11)", fl <= 1.2*one1, okFl && okOne, fmt.Sprintf("%.2fx", fl/one1))
	return ts
}

func printText(w io.Writer, header []string, rows [][]string, targets []target) {
	for _, h := range header {
		fmt.Fprintln(w, h)
	}
	fmt.Fprintln(w)
	widths := make([]int, len(columns))
	for _, r := range append([][]string{columns}, rows...) {
		for i, cell := range r {
			widths[i] = max(widths[i], len(cell))
		}
	}
	line := func(r []string) {
		for i, cell := range r {
			if i > 2 && i < 8 {
				fmt.Fprintf(w, "%*s  ", widths[i], cell)
			} else {
				fmt.Fprintf(w, "%-*s  ", widths[i], cell)
			}
		}
		fmt.Fprintln(w)
	}
	line(columns)
	for _, r := range rows {
		line(r)
	}
	fmt.Fprintln(w, "\nTargets (issue 3 unless named):")
	for _, t := range targets {
		fmt.Fprintf(w, "  %-55s %s\n", t.text, t.verdict)
	}
}

func printMarkdown(w io.Writer, header []string, rows [][]string, targets []target) {
	for _, h := range header {
		fmt.Fprintf(w, "%s  \n", h)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "| %s |\n", strings.Join(columns, " | "))
	align := make([]string, len(columns))
	for i := range align {
		align[i] = "---"
		if i > 2 && i < 8 {
			align[i] = "---:"
		}
	}
	fmt.Fprintf(w, "|%s|\n", strings.Join(align, "|"))
	for _, r := range rows {
		fmt.Fprintf(w, "| %s |\n", strings.Join(r, " | "))
	}
	fmt.Fprintln(w, "\n| target (issue 3 unless named) | result |\n|---|---|")
	for _, t := range targets {
		fmt.Fprintf(w, "| %s | %s |\n", t.text, t.verdict)
	}
}
