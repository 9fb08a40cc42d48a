// bench/peers/echo_go.go: a TCP echo server in Go on one core (GOMAXPROCS=1).
//
//	echo_go [-port N] [-max-seconds N]
//
// Listens on 127.0.0.1 (port 0, the default: any free port), prints
// "port N" as its first line, echoes every byte on every connection, and
// exits on SIGINT or SIGTERM (or after -max-seconds, default 3600). A peer
// for bench/run_echo.sh, written the way Go echo servers are written: a
// goroutine per connection looping Read -> Write on its own buffer (net
// sets TCP_NODELAY by default). The standard library only.
//
// Build: GOPROXY=off go build -o build/peers/echo_go bench/peers/echo_go.go
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"
)

func serve(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 16384)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func main() {
	port := flag.Int("port", 0, "TCP port on 127.0.0.1 (0: any free port)")
	maxSeconds := flag.Int("max-seconds", 3600, "exit after this many seconds")
	flag.Parse()
	runtime.GOMAXPROCS(1) // one core: the target is per core

	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo_go:", err)
		os.Exit(1)
	}
	fmt.Printf("port %d\n", ln.Addr().(*net.TCPAddr).Port)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		select {
		case <-sig:
		case <-time.After(time.Duration(*maxSeconds) * time.Second):
		}
		os.Exit(0)
	}()

	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "echo_go:", err)
			os.Exit(1)
		}
		go serve(c)
	}
}
