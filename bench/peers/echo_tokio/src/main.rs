//! bench/peers/echo_tokio: a TCP echo server on Tokio, current_thread
//! runtime (one thread, one core).
//!
//!     echo_tokio [--port N] [--max-seconds N]
//!
//! Listens on 127.0.0.1 (port 0, the default: any free port), prints
//! "port N" as its first line, echoes every byte on every connection, and
//! exits on SIGINT or SIGTERM (or after --max-seconds, default 3600). A
//! peer for bench/run_echo.sh, written the way Tokio echo servers are
//! written: a task per connection looping read -> write_all on its own
//! buffer, TCP_NODELAY on.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};

async fn serve(mut sock: TcpStream) {
    let _ = sock.set_nodelay(true);
    let mut buf = vec![0u8; 16384];
    loop {
        match sock.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if sock.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn usage() -> ! {
    eprintln!("usage: echo_tokio [--port N] [--max-seconds N]");
    std::process::exit(2);
}

fn parse_args() -> (u16, u64) {
    let (mut port, mut max_seconds) = (0u16, 3600u64);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--port" => port = v.parse().unwrap_or_else(|_| usage()),
            "--max-seconds" => max_seconds = v.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    (port, max_seconds)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (port, max_seconds) = parse_args();
    let listener = match TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("echo_tokio: cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    println!("port {}", listener.local_addr().unwrap().port());
    let mut sigint = signal(SignalKind::interrupt()).unwrap();
    let mut sigterm = signal(SignalKind::terminate()).unwrap();
    let deadline = tokio::time::sleep(Duration::from_secs(max_seconds));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((sock, _)) => { tokio::spawn(serve(sock)); }
                Err(e) => eprintln!("echo_tokio: accept: {e}"),
            },
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = &mut deadline => break,
        }
    }
}
