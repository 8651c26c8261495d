//! Where a produce request's time goes on the broker, from the moment its
//! frame is read: until its appends are durable, and until its response has
//! been handed to the socket. Logged at shutdown with the WAL's own figures
//! (queue wait, group commit); floe-bench compares them with the client's.

use floe_storage::latency::LatencyRecorder;

#[derive(Default)]
pub struct ProduceStats {
    /// Request read to every append fsynced (the response can be encoded).
    pub to_durable: LatencyRecorder,
    /// Request read to the response flushed to the socket.
    pub to_sent: LatencyRecorder,
}
