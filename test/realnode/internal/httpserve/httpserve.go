// Package httpserve runs one HTTP handler on several addresses until a
// context ends, then shuts down gracefully: what the test images' servers
// share.
package httpserve

import (
	"context"
	"log"
	"net"
	"net/http"
	"time"
)

// Serve listens on every address and serves h until ctx ends or a listener
// fails; on ctx's end it lets requests in flight finish within grace.
func Serve(ctx context.Context, addrs []string, h http.Handler, grace time.Duration) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	errs := make(chan error, len(addrs))
	for _, addr := range addrs {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		log.Printf("listening on %s", ln.Addr())
		go func() { errs <- srv.Serve(ln) }()
	}
	select {
	case <-ctx.Done():
	case err := <-errs:
		return err
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	return srv.Shutdown(shutdownCtx)
}
