#!/usr/bin/env python3
"""bench/peers/echo_asyncio.py: a TCP echo server on asyncio (or uvloop), one loop.

    echo_asyncio.py [--uvloop] [--port N] [--max-seconds N]

Listens on 127.0.0.1 (port 0, the default: any free port), prints "port N"
as its first line, echoes every byte on every connection, and exits on
SIGINT or SIGTERM (or after --max-seconds, default 3600). A peer for
bench/run_echo.sh, written the way a fast asyncio echo server is written:
a Protocol whose data_received hands the bytes straight back to
transport.write (asyncio and uvloop set TCP_NODELAY on TCP transports),
with reading paused while the transport's write buffer is over its high
water mark. --uvloop runs the same code on uvloop's loop (libuv).
"""

import argparse
import asyncio
import signal
import sys


class Echo(asyncio.Protocol):
    __slots__ = ("transport",)

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def pause_writing(self):
        self.transport.pause_reading()

    def resume_writing(self):
        self.transport.resume_reading()


async def serve(port, max_seconds):
    loop = asyncio.get_running_loop()
    try:
        server = await loop.create_server(Echo, "127.0.0.1", port, backlog=1024)
    except OSError as e:
        print(f"echo_asyncio: cannot listen on 127.0.0.1:{port}: {e}", file=sys.stderr)
        return 1
    print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.call_later(max_seconds, stop.set)
    await stop.wait()
    server.close()
    return 0


def main():
    ap = argparse.ArgumentParser(description="TCP echo server (asyncio or uvloop)")
    ap.add_argument("--uvloop", action="store_true", help="run on uvloop's event loop")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--max-seconds", type=float, default=3600)
    args = ap.parse_args()
    if args.uvloop:
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(serve(args.port, args.max_seconds))
    finally:
        loop.close()


if __name__ == "__main__":
    sys.exit(main())
