package config

import "testing"

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in      string
		want    ByteSize
		wantErr bool
	}{
		{in: "0", want: 0},
		{in: "1048576", want: 1 << 20},
		{in: "512KiB", want: 512 << 10},
		{in: "10MB", want: 10_000_000},
		{in: "1GiB", want: 1 << 30},
		{in: "2GB", want: 2_000_000_000},
		{in: "3KB", want: 3000},
		{in: "1TiB", want: 1 << 40},
		{in: "10 mb", want: 10_000_000},
		{in: "100B", want: 100},
		{in: "-1", want: -1},
		{in: "", wantErr: true},
		{in: "MB", wantErr: true},
		{in: "1.5GB", wantErr: true},
		{in: "10 kilobytes", wantErr: true},
		{in: "10M", wantErr: true},
		{in: "9999999999TB", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseByteSize(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("got %v (%v), want %v (error %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestByteSizeString(t *testing.T) {
	tests := []struct {
		in   ByteSize
		want string
	}{
		{0, "0"},
		{100, "100"},
		{64 << 10, "64KiB"},
		{10_000_000, "10MB"},
		{1 << 30, "1GiB"},
		{1_024_000, "1000KiB"},
		{1500, "1500"},
		{-2048, "-2KiB"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.in.String(); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			if back, err := ParseByteSize(tt.in.String()); err != nil || back != tt.in {
				t.Errorf("got %v (%v) back, want %v", back, err, tt.in)
			}
		})
	}
}
