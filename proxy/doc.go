// Package proxy turns a validated [config.Config] into an immutable routing
// [Table] and serves it: Host and path routing, reverse proxying to
// Upstreams, fixed responses, static files and the HTTP-to-HTTPS redirect.
//
// It knows nothing about certificates, ACME or listeners: the command builds
// the http.Servers, hands [Handler] to the HTTPS Listener and
// [Handler.RedirectHandler] (behind the ACME challenge handler) to the HTTP
// Listener, and calls [Handler.Swap] with a freshly compiled Table on reload.
package proxy
