package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// byteUnits lists the size units from the largest down, so String picks the
// largest unit that divides a size exactly.
var byteUnits = [...]struct {
	name string
	size int64
}{
	{"TiB", 1 << 40}, {"TB", 1e12},
	{"GiB", 1 << 30}, {"GB", 1e9},
	{"MiB", 1 << 20}, {"MB", 1e6},
	{"KiB", 1 << 10}, {"KB", 1e3},
}

// ParseByteSize parses a size written as a plain number of bytes or a number
// followed by a unit: B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB,
// TiB (powers of 1024). Units are case-insensitive and may follow a space.
func ParseByteSize(s string) (ByteSize, error) {
	s = strings.TrimSpace(s)
	i := 0
	if i < len(s) && (s[i] == '-' || s[i] == '+') {
		i++
	}
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	unit := strings.TrimSpace(s[i:])
	if unit == "" || strings.EqualFold(unit, "B") {
		return ByteSize(n), nil
	}
	for _, u := range byteUnits {
		if !strings.EqualFold(unit, u.name) {
			continue
		}
		if n > math.MaxInt64/u.size || n < math.MinInt64/u.size {
			return 0, fmt.Errorf("size %q is too large", s)
		}
		return ByteSize(n * u.size), nil
	}
	return 0, fmt.Errorf("invalid size unit %q in %q", unit, s)
}

// String formats b with the largest unit that divides it exactly ("64KiB",
// "10MB"), or as a plain number of bytes. ParseByteSize reads it back.
func (b ByteSize) String() string {
	if b != 0 {
		for _, u := range byteUnits {
			if int64(b)%u.size == 0 {
				return strconv.FormatInt(int64(b)/u.size, 10) + u.name
			}
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// UnmarshalText implements [encoding.TextUnmarshaler], which the YAML
// decoder uses for scalars; see [ParseByteSize].
func (b *ByteSize) UnmarshalText(text []byte) error {
	n, err := ParseByteSize(string(text))
	if err != nil {
		return err
	}
	*b = n
	return nil
}

// MarshalText implements [encoding.TextMarshaler]; see [ByteSize.String].
func (b ByteSize) MarshalText() ([]byte, error) {
	return []byte(b.String()), nil
}
