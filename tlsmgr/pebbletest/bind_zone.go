package pebbletest

import (
	"testing"

	"github.com/miekg/dns"
)

// AddRecords adds records to b's zone, each in zone-file syntax
// (`app.test. 60 IN CAA 0 issue "pebble.test"`), in one dynamic update
// signed with b's TSIG key, and fails t if BIND does not apply it. A name
// that gets a record no longer matches the zone's wildcard, so it needs
// its own A record to keep resolving.
func (b *BIND) AddRecords(t testing.TB, records ...string) {
	t.Helper()
	var rrs []dns.RR
	for _, s := range records {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatalf("pebbletest: record %q: %v", s, err)
		}
		rrs = append(rrs, rr)
	}
	if err := b.update(t.Context(), func(m *dns.Msg) { m.Insert(rrs) }); err != nil {
		t.Fatalf("pebbletest: adding %q: %v", records, err)
	}
}

// DeleteRecords deletes every record of type rrtype ("A", "CAA") at name
// from b's zone with a signed dynamic update, and fails t if BIND does not
// apply it. DeleteRecords(t, "*."+zone, "A") stops the zone's wildcard
// from answering names it does not hold.
func (b *BIND) DeleteRecords(t testing.TB, name, rrtype string) {
	t.Helper()
	typ, ok := dns.StringToType[rrtype]
	if !ok {
		t.Fatalf("pebbletest: unknown record type %q", rrtype)
	}
	rrset := []dns.RR{&dns.ANY{Hdr: dns.RR_Header{Name: dns.Fqdn(name), Rrtype: typ, Class: dns.ClassINET}}}
	if err := b.update(t.Context(), func(m *dns.Msg) { m.RemoveRRset(rrset) }); err != nil {
		t.Fatalf("pebbletest: deleting %s %s: %v", name, rrtype, err)
	}
}
