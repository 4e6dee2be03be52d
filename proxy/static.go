package proxy

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path"
	"strings"
)

// staticRoute serves files below a root directory: index.html for a
// directory, never a listing, never a dotfile. Files are opened with
// os.OpenInRoot, so neither ".." nor a symlink can reach outside the root.
type staticRoute struct {
	root  string
	route *route
}

func newStaticRoute(r *route, root string) (*staticRoute, error) {
	fi, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("checking root: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("checking root %q: not a directory", root)
	}
	return &staticRoute{root: root, route: r}, nil
}

func (s *staticRoute) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeStatus(w, http.StatusMethodNotAllowed)
		return
	}
	// r.URL.Path is already clean: it has no "." or ".." segment left.
	p := r.URL.Path
	if s.route.stripPrefix {
		p = s.route.strip(p)
	}
	name := strings.TrimPrefix(p, "/")
	if hasDotSegment(name) {
		writeStatus(w, http.StatusNotFound)
		return
	}
	if name == "" {
		name = "."
	}
	f, err := os.OpenInRoot(s.root, name)
	if err != nil {
		writeStatus(w, openStatus(err))
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		writeStatus(w, openStatus(err))
		return
	}
	if fi.IsDir() {
		if !strings.HasSuffix(r.URL.Path, "/") {
			target := r.URL.EscapedPath() + "/"
			if r.URL.RawQuery != "" {
				target += "?" + r.URL.RawQuery
			}
			w.Header().Set("Location", target)
			w.WriteHeader(http.StatusMovedPermanently)
			return
		}
		index, err := os.OpenInRoot(s.root, path.Join(name, "index.html"))
		if err != nil {
			// No index.html: 404 rather than a directory listing.
			writeStatus(w, openStatus(err))
			return
		}
		defer index.Close()
		if fi, err = index.Stat(); err != nil || fi.IsDir() {
			writeStatus(w, http.StatusNotFound)
			return
		}
		f = index
	}
	http.ServeContent(w, r, fi.Name(), fi.ModTime(), f)
}

// hasDotSegment reports whether any segment of the relative path name
// starts with a dot (".env", ".git/config").
func hasDotSegment(name string) bool {
	for seg := range strings.SplitSeq(name, "/") {
		if strings.HasPrefix(seg, ".") {
			return true
		}
	}
	return false
}

// openStatus maps a file error to a status: 403 for permissions, 404 for
// everything else, so nothing about the filesystem leaks.
func openStatus(err error) int {
	if errors.Is(err, fs.ErrPermission) {
		return http.StatusForbidden
	}
	return http.StatusNotFound
}
