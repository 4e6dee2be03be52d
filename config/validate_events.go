package config

import (
	"net/url"
	"os/exec"
	"strings"
	"time"
)

// DefaultRetireAfter is how long the Certificate of a removed host is kept,
// retired, before it is deleted: long enough to undo a mistaken removal
// without a new order, or to revoke it.
const DefaultRetireAfter = 720 * time.Hour

// events checks the events receivers and retire_after.
func (v *validator) events() {
	c := v.c
	if c.RetireAfter < 0 {
		v.addf("retire_after", "must not be negative")
	}
	ev := c.Events
	if ev == nil {
		return
	}
	if ev.Webhook == "" && len(ev.Exec) == 0 {
		v.addf("events", "needs a webhook URL or an exec command (or remove events)")
	}
	if ev.Webhook != "" {
		u, err := url.Parse(ev.Webhook)
		switch {
		case err != nil:
			v.addf("events.webhook", "%q is not a URL: %v", ev.Webhook, err)
		case u.Scheme != "http" && u.Scheme != "https":
			v.addf("events.webhook", "%q must be an http:// or https:// URL", ev.Webhook)
		case u.Host == "":
			v.addf("events.webhook", "%q has no host", ev.Webhook)
		}
	}
	if len(ev.Exec) > 0 {
		cmd := ev.Exec[0]
		switch {
		case strings.TrimSpace(cmd) == "":
			v.addf("events.exec[0]", "the command is empty")
		default:
			if _, err := exec.LookPath(cmd); err != nil {
				v.addf("events.exec[0]", "command %q not found or not executable", cmd)
			}
		}
	}
}
