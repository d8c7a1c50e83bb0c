// go-www: the demo application of recipes/go-www. A static file server on
// 0.0.0.0:8080 (or the address in $LISTEN) for the files of static/,
// embedded in the binary with //go:embed: GET / is static/index.html,
// GET /style.css is static/style.css, anything else 404.
//
// Not for: production traffic (no TLS, no timeouts tuned). It exists to
// show eifbake building a Go program reproducibly (standard library only,
// CGO_ENABLED=0: a static binary) whose served files the manifest reports
// by sha256 (the recipe's `report`).
package main

import (
	"embed"
	"fmt"
	"io/fs"
	"net/http"
	"os"
)

//go:embed static
var static embed.FS

func main() {
	addr := os.Getenv("LISTEN")
	if addr == "" {
		addr = "0.0.0.0:8080"
	}
	site, err := fs.Sub(static, "static")
	if err != nil {
		fmt.Fprintf(os.Stderr, "go-www: %v\n", err)
		os.Exit(2)
	}
	http.Handle("/", http.FileServer(http.FS(site)))
	fmt.Printf("go-www: listening on %s\n", addr)
	if err := http.ListenAndServe(addr, nil); err != nil {
		fmt.Fprintf(os.Stderr, "go-www: cannot serve on %s: %v\n", addr, err)
		os.Exit(2)
	}
}
