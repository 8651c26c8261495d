//! One client connection: read a frame (length checked before the body is
//! read), decode, handle, and write responses in request order. Produce
//! requests are pipelined: the next request is read while earlier appends
//! wait for their fsync, and their responses still go out in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use floe_protocol::frame::request_length;
use floe_protocol::kafka_protocol::messages::ApiKey;
use floe_protocol::{DecodeError, RequestFrame};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc};

use crate::broker::Broker;
use crate::handlers::{self, Reply};

/// Requests read ahead while earlier responses are pending.
const PIPELINE_DEPTH: usize = 32;

pub async fn serve(
    broker: Arc<Broker>,
    socket: TcpStream,
    peer: SocketAddr,
    mut stop: broadcast::Receiver<()>,
) {
    let (mut reader, writer) = socket.into_split();
    let (tx, rx) = mpsc::channel::<(Reply, Instant)>(PIPELINE_DEPTH);
    let write_task = tokio::spawn(write_replies(broker.clone(), writer, rx, peer));
    let max = broker.config.max_request_bytes;
    loop {
        let mut prefix = [0u8; 4];
        let read = tokio::select! {
            _ = stop.recv() => break,
            read = reader.read_exact(&mut prefix) => read,
        };
        if read.is_err() {
            break; // closed by the client (or reset): nothing to log
        }
        let len = match request_length(prefix, max) {
            Ok(len) => len,
            Err(error) => {
                tracing::warn!(%peer, %error, "closing connection: bad frame");
                break;
            }
        };
        let mut body = BytesMut::zeroed(len);
        if reader.read_exact(&mut body).await.is_err() {
            tracing::debug!(%peer, len, "connection closed mid-request");
            break;
        }
        let received = Instant::now();
        let reply = match RequestFrame::parse(body.freeze()) {
            Ok(frame) => handlers::handle(&broker, frame, peer).await,
            Err(DecodeError::UnsupportedVersion {
                api_key: ApiKey::ApiVersions,
                version,
                correlation_id,
            }) => handlers::api_versions::unsupported_version(version, correlation_id),
            Err(error) => Reply::Close(error.to_string()),
        };
        if let Reply::Close(reason) = &reply {
            tracing::warn!(%peer, %reason, "closing connection");
            break;
        }
        if tx.send((reply, received)).await.is_err() {
            break; // the writer failed: the socket is gone
        }
    }
    drop(tx);
    let _ = write_task.await;
}

async fn write_replies(
    broker: Arc<Broker>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::Receiver<(Reply, Instant)>,
    peer: SocketAddr,
) {
    let stats = &broker.produce_stats;
    let mut writer = BufWriter::new(writer);
    // Receive times of durable replies written but not yet flushed.
    let mut unflushed: Vec<Instant> = Vec::new();
    while let Some((reply, received)) = rx.recv().await {
        let bytes = match reply {
            Reply::Now(bytes) => bytes,
            Reply::Later(future) => {
                // Earlier responses must not wait in the buffer while this
                // one waits for its fsync.
                if !writer.buffer().is_empty() {
                    if writer.flush().await.is_err() {
                        return;
                    }
                    unflushed.drain(..).for_each(|t| stats.to_sent.record(t.elapsed()));
                }
                let bytes = future.await;
                stats.to_durable.record(received.elapsed());
                unflushed.push(received);
                bytes
            }
            Reply::Nothing | Reply::Close(_) => continue,
        };
        if let Err(error) = writer.write_all(&bytes).await {
            tracing::debug!(%peer, %error, "write failed");
            return;
        }
        // Flush when no further response is ready, so pipelined responses
        // share a syscall.
        if rx.is_empty() {
            if writer.flush().await.is_err() {
                return;
            }
            unflushed.drain(..).for_each(|t| stats.to_sent.record(t.elapsed()));
        }
    }
    let _ = writer.shutdown().await;
}
