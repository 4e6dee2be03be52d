package config

import "fmt"

// pending rejects settings the schema already names but gatehouse does not
// act on yet, so a config never silently asks for something that is not
// done. Each check goes away with the feature that implements it.
func (v *validator) pending() {
	const msg = "not supported yet by this gatehouse version"
	c := v.c
	for i, s := range c.Sites {
		sp := fmt.Sprintf("sites[%d]", i)
		for j, r := range s.Routes {
			rp := fmt.Sprintf("%s.routes[%d]", sp, j)
			for key, set := range map[string]bool{
				"lb":                  r.LB != nil,
				"health":              r.Health != nil,
				"passive_health":      r.PassiveHealth != nil,
				"upstream_tls":        r.UpstreamTLS != nil,
				"keepalive":           r.KeepAlive != nil,
				"max_response_header": r.MaxResponseHeader != 0,
			} {
				if set {
					v.addf(rp+"."+key, msg)
				}
			}
		}
	}
}
