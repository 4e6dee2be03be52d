package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// MinLogMaxSize is the smallest log.max_size: below it the access log would
// rotate every few lines.
const MinLogMaxSize = ByteSize(1 << 10)

// listenExtras checks the Listener options beyond the addresses
// (proxy_protocol, http3, public_https_port, local_ca.share) and where the access log goes
// (log.file, log.max_size).
func (v *validator) listenExtras() {
	c := v.c
	if c.Listen.ProxyProtocol && len(c.TrustedProxies) == 0 {
		v.addf("listen.proxy_protocol", "needs trusted_proxies: a PROXY header is believed only from those peers, so list the load balancers that send it")
	}
	if c.Listen.HTTP3 && c.Listen.HTTPS == "" {
		v.addf("listen.http3", "needs listen.https: HTTP/3 is served on the HTTPS port (UDP) with the same certificates")
	}
	switch p := c.Listen.PublicHTTPSPort; {
	case p == 0:
	case p < 1 || p > 65535:
		v.addf("listen.public_https_port", "%d is not a port number from 1 to 65535", p)
	case c.Listen.HTTPS == "":
		v.addf("listen.public_https_port", "needs listen.https: it is the port clients reach the HTTPS Listener on")
	}

	if c.LocalCA.Share && c.Listen.HTTP == "" {
		v.addf("local_ca.share", "needs listen.http: the HTTP Listener serves the root certificate")
	}

	l := c.Log
	if l.File != "" {
		switch info, err := os.Stat(filepath.Dir(l.File)); {
		case errors.Is(err, fs.ErrNotExist):
			v.addf("log.file", "directory %s does not exist; gatehouse creates the file, not its directory", filepath.Dir(l.File))
		case err != nil:
			v.addf("log.file", "checking directory %s: %v", filepath.Dir(l.File), err)
		case !info.IsDir():
			v.addf("log.file", "%s is not a directory", filepath.Dir(l.File))
		default:
			if info, err := os.Stat(l.File); err == nil && !info.Mode().IsRegular() {
				v.addf("log.file", "%s exists and is not a regular file", l.File)
			}
		}
		if l.Access != nil && !*l.Access {
			v.addf("log.file", "receives only the access log, which log.access turns off; remove one of them")
		}
	}
	switch {
	case l.MaxSize < 0:
		v.addf("log.max_size", "must not be negative")
	case l.MaxSize > 0 && l.File == "":
		v.addf("log.max_size", "needs log.file: only a log file rotates")
	case l.MaxSize > 0 && l.MaxSize < MinLogMaxSize:
		v.addf("log.max_size", "must be at least %s, or 0 to rotate only on SIGUSR1", MinLogMaxSize)
	}
}
