//! A deliberately unsafe S3 endpoint for tests: it stores objects in memory
//! and ignores `If-None-Match` and `If-Match`, as Garage and the JuiceFS
//! gateway do. Floe must refuse to run a cluster on such a store.
//! HTTP/1.1 with Content-Length bodies only; enough for PUT, GET, HEAD and
//! DELETE of single objects.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

type Objects = Arc<Mutex<HashMap<String, Vec<u8>>>>;

/// A running fake; stops when dropped.
pub struct FakeS3 {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl FakeS3 {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let objects: Objects = Arc::default();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, objects.clone()));
            }
        });
        Ok(Self { addr, task })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for FakeS3 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(socket: TcpStream, objects: Objects) {
    let (read, mut write) = socket.into_split();
    let mut read = BufReader::new(read);
    // Bounded by the client: each round reads one request.
    loop {
        let mut line = String::new();
        if read.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, target) =
            (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if read.read_line(&mut h).await.unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        if read.read_exact(&mut body).await.is_err() {
            return;
        }
        let key = target.split('?').next().unwrap_or("").to_string();
        let (status, payload, etag) = {
            let mut objects = objects.lock().expect("objects lock");
            match method.as_str() {
                "PUT" => {
                    let etag = format!("\"{:x}\"", crc(&body));
                    objects.insert(key, body);
                    ("200 OK", Vec::new(), Some(etag))
                }
                "GET" | "HEAD" => match objects.get(&key) {
                    Some(v) => ("200 OK", v.clone(), Some(format!("\"{:x}\"", crc(v)))),
                    None => ("404 Not Found", b"<Error><Code>NoSuchKey</Code></Error>".to_vec(), None),
                },
                "DELETE" => {
                    objects.remove(&key);
                    ("204 No Content", Vec::new(), None)
                }
                _ => ("501 Not Implemented", Vec::new(), None),
            }
        };
        let mut head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nLast-Modified: Tue, 01 Dec 2026 00:00:00 GMT\r\nConnection: keep-alive\r\n",
            payload.len()
        );
        if let Some(etag) = etag {
            head.push_str(&format!("ETag: {etag}\r\n"));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if method != "HEAD" {
            out.extend_from_slice(&payload);
        }
        if write.write_all(&out).await.is_err() {
            return;
        }
    }
}

fn crc(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}
