package config

import (
	"reflect"
	"testing"
)

// TestSiteEqualSeesEveryField changes each field of a Site, of its TLS and
// of a Route, and of every struct they point to, one at a time: Equal must
// tell each change, or a reload would keep what it built for the old
// value. A field added later fails here until Equal compares it.
func TestSiteEqualSeesEveryField(t *testing.T) {
	base := func() Site { return Site{Routes: []Route{{}}} }
	for _, m := range mutations(reflect.TypeFor[Site](), "") {
		t.Run(m.path, func(t *testing.T) {
			a, b := base(), base()
			m.set(reflect.ValueOf(&b).Elem())
			if a.Equal(&b) || b.Equal(&a) {
				t.Errorf("Equal misses a change of %s", m.path)
			}
			c := base()
			m.set(reflect.ValueOf(&c).Elem())
			if !b.Equal(&c) {
				t.Errorf("Equal tells two Sites apart that both change %s the same way", m.path)
			}
		})
	}
}

// mutation sets one field, found by path, below a value of the type it
// was made for.
type mutation struct {
	path string
	set  func(v reflect.Value)
}

// mutations lists, for struct type typ, one change of each field and of
// each field of the structs it holds (through a pointer, or as a Route
// of Site.Routes): the field becomes non-zero (a pointer gets a zero
// struct), or a held struct's field changes under a non-nil pointer.
func mutations(typ reflect.Type, prefix string) []mutation {
	var out []mutation
	for i := range typ.NumField() {
		f := typ.Field(i)
		path := prefix + f.Name
		out = append(out, mutation{path, func(v reflect.Value) { setNonZero(v.Field(i)) }})
		var inner reflect.Type
		switch {
		case f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[Site]():
			inner = f.Type
		case f.Type.Kind() == reflect.Pointer && f.Type.Elem().Kind() == reflect.Struct:
			inner = f.Type.Elem()
		case f.Type == reflect.TypeFor[[]Route]():
			inner = reflect.TypeFor[Route]()
		}
		if inner == nil {
			continue
		}
		for _, m := range mutations(inner, path+".") {
			out = append(out, mutation{m.path, func(v reflect.Value) {
				fv := v.Field(i)
				switch fv.Kind() {
				case reflect.Pointer:
					if fv.IsNil() {
						fv.Set(reflect.New(fv.Type().Elem()))
					}
					m.set(fv.Elem())
				case reflect.Slice:
					m.set(fv.Index(0))
				default:
					m.set(fv)
				}
			}})
		}
	}
	return out
}

// setNonZero gives v a value other than its zero value.
func setNonZero(v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64:
		v.SetInt(1)
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 1, 1)
		setNonZero(s.Index(0))
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		setNonZero(k)
		setNonZero(e)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Struct:
		setNonZero(v.Field(0))
	default:
		panic("setNonZero: no case for " + v.Kind().String())
	}
}
