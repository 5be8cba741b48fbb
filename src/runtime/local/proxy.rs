//! The app's stable port: a small HTTP/1.1 reverse proxy on 127.0.0.1 that sends each
//! request to a healthy task of the active revision (round robin).
//!
//! It is HTTP-aware only as far as draining needs: it reads the request head, rewrites it
//! to `Connection: close` and relays the exchange, so every request is one connection to
//! one task and counts as in flight on that task until the task's response ends. A task
//! being replaced is therefore never handed a new request, and its in-flight ones finish
//! before it is stopped. Keep-alive between client and proxy is given up for that (the
//! client sees `Connection: close`), which is cheap on loopback.
//!
//! A task that refuses the connection (it died a moment ago) is skipped and the request
//! goes to another one: nothing has been sent yet, so retrying is safe.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::service::AppKey;
use super::shared::Agent;
use crate::runtime::TaskId;

/// Largest request head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// How many tasks a request is offered to before it fails.
const ATTEMPTS: usize = 3;

/// Bind the app's port.
pub async fn bind(port: u16) -> std::io::Result<TcpListener> {
    TcpListener::bind(("127.0.0.1", port)).await
}

/// Accept connections forever (the task is aborted when the service goes away).
pub async fn serve(agent: Arc<Agent>, key: AppKey, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((conn, _)) => {
                let _ = conn.set_nodelay(true);
                tokio::spawn(handle(agent.clone(), key.clone(), conn));
            }
            // Out of file descriptors and the like: back off instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn handle(agent: Arc<Agent>, key: AppKey, mut client: TcpStream) {
    let Some((head, rest)) = read_head(&mut client).await else { return };
    let head = rewrite_head(&head);
    let mut refused: Vec<TaskId> = Vec::new();
    for _ in 0..ATTEMPTS {
        let Some((task, port, guard)) = agent.with_state(|s| s.pick_backend(&key, &refused)) else { break };
        let connected = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(("127.0.0.1", port))).await;
        let mut backend = match connected {
            Ok(Ok(b)) => b,
            _ => {
                refused.push(task);
                continue;
            }
        };
        let _ = backend.set_nodelay(true);
        if backend.write_all(&head).await.is_err() || backend.write_all(&rest).await.is_err() {
            refused.push(task);
            continue;
        }
        relay(client, backend).await;
        drop(guard);
        return;
    }
    let body = "no healthy task to serve this request\n";
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.write_all(reply.as_bytes()).await;
    let _ = client.shutdown().await;
}

/// Relay until the task has sent its whole response (it closes: we asked it to).
async fn relay(client: TcpStream, backend: TcpStream) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut backend_read, mut backend_write) = backend.into_split();
    // The rest of the request body flows on its own; the exchange is over when the
    // response is, whatever the client does with its side.
    let upload = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut backend_write).await;
        let _ = backend_write.shutdown().await;
    });
    let _ = tokio::io::copy(&mut backend_read, &mut client_write).await;
    let _ = client_write.shutdown().await;
    upload.abort();
}

/// Read up to the end of the request head; returns the head and any bytes after it.
async fn read_head(client: &mut TcpStream) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(30), client.read(&mut chunk)).await.ok()?.ok()?;
        if n == 0 {
            return None;
        }
        let start = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buf[start..].windows(4).position(|w| w == b"\r\n\r\n") {
            let end = start + pos + 4;
            let rest = buf.split_off(end);
            return Some((buf, rest));
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
    }
}

/// Drop hop-by-hop connection headers and ask for `Connection: close`.
fn rewrite_head(head: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut out = String::with_capacity(text.len() + 32);
    for (i, line) in text.split("\r\n").enumerate() {
        if line.is_empty() {
            continue;
        }
        if i > 0 {
            let name = line.split(':').next().unwrap_or("").trim().to_ascii_lowercase();
            if matches!(name.as_str(), "connection" | "keep-alive" | "proxy-connection") {
                continue;
            }
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_is_rewritten_to_close() {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\n\r\n";
        let out = String::from_utf8(rewrite_head(head)).unwrap();
        assert_eq!(out, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    }
}
