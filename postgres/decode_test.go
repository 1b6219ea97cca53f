package postgres

import (
	"encoding/binary"
	"math"
	"reflect"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// TestDecodeValue checks that decodeValue's own decoding of binary
// integers, floats and booleans gives what pgx's codecs give for the same
// bytes, at the edges of each type.
func TestDecodeValue(t *testing.T) {
	m := pgtype.NewMap()
	be := binary.BigEndian
	var cases []struct {
		oid uint32
		raw []byte
	}
	add := func(oid uint32, raw []byte) {
		cases = append(cases, struct {
			oid uint32
			raw []byte
		}{oid, raw})
	}
	for _, n := range []int64{0, 1, -1, math.MaxInt64, math.MinInt64, 1 << 40} {
		add(pgtype.Int8OID, be.AppendUint64(nil, uint64(n)))
	}
	for _, n := range []int32{0, 7, -7, math.MaxInt32, math.MinInt32} {
		add(pgtype.Int4OID, be.AppendUint32(nil, uint32(n)))
	}
	for _, n := range []int16{0, 3, -3, math.MaxInt16, math.MinInt16} {
		add(pgtype.Int2OID, be.AppendUint16(nil, uint16(n)))
	}
	for _, f := range []float64{0, math.Copysign(0, -1), 1.5, -2.25e300, math.Inf(1), math.Inf(-1), math.NaN(), math.SmallestNonzeroFloat64} {
		add(pgtype.Float8OID, be.AppendUint64(nil, math.Float64bits(f)))
	}
	for _, f := range []float32{0, 0.1, -3.4e38, float32(math.Inf(1)), float32(math.NaN())} {
		add(pgtype.Float4OID, be.AppendUint32(nil, math.Float32bits(f)))
	}
	add(pgtype.BoolOID, []byte{0})
	add(pgtype.BoolOID, []byte{1})
	for _, c := range cases {
		fd := pgconn.FieldDescription{Name: "c", DataTypeOID: c.oid, Format: pgtype.BinaryFormatCode}
		got, err := decodeValue(m, fd, c.raw)
		if err != nil {
			t.Fatalf("oid %d %x: %v", c.oid, c.raw, err)
		}
		var want any
		switch c.oid {
		case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID:
			var n int64
			err = m.Scan(c.oid, pgtype.BinaryFormatCode, c.raw, &n)
			want = n
		case pgtype.Float4OID, pgtype.Float8OID:
			var f float64
			err = m.Scan(c.oid, pgtype.BinaryFormatCode, c.raw, &f)
			want = f
		case pgtype.BoolOID:
			var b bool
			err = m.Scan(c.oid, pgtype.BinaryFormatCode, c.raw, &b)
			want = b
		}
		if err != nil {
			t.Fatalf("pgx: oid %d %x: %v", c.oid, c.raw, err)
		}
		if f, ok := want.(float64); ok && math.IsNaN(f) {
			if g, ok := got.(float64); !ok || !math.IsNaN(g) {
				t.Errorf("oid %d %x: %v, want NaN", c.oid, c.raw, got)
			}
			continue
		}
		if !reflect.DeepEqual(got, want) || math.Signbit(toFloat(got)) != math.Signbit(toFloat(want)) {
			t.Errorf("oid %d %x: %#v, pgx gives %#v", c.oid, c.raw, got, want)
		}
	}
}

func toFloat(v any) float64 {
	if f, ok := v.(float64); ok {
		return f
	}
	return 0
}

// BenchmarkDecodeValue decodes a binary int8 and float8, as every row of a
// digest or a copy through Go does for its numeric columns.
func BenchmarkDecodeValue(b *testing.B) {
	m := pgtype.NewMap()
	i8 := pgconn.FieldDescription{DataTypeOID: pgtype.Int8OID, Format: pgtype.BinaryFormatCode}
	f8 := pgconn.FieldDescription{DataTypeOID: pgtype.Float8OID, Format: pgtype.BinaryFormatCode}
	ri := binary.BigEndian.AppendUint64(nil, 12345)
	rf := binary.BigEndian.AppendUint64(nil, math.Float64bits(1.5))
	for b.Loop() {
		if _, err := decodeValue(m, i8, ri); err != nil {
			b.Fatal(err)
		}
		if _, err := decodeValue(m, f8, rf); err != nil {
			b.Fatal(err)
		}
	}
}
