//! The accept loop: a semaphore bounds concurrent connections, a broadcast
//! tells every connection to stop reading at shutdown, and shutdown waits for
//! their in-flight requests.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{broadcast, Semaphore};
use tokio::task::JoinSet;

use crate::broker::Broker;
use crate::connection;

/// Serves Kafka on `listener` until `shutdown` resolves, then lets open
/// connections finish their current requests (bounded) and returns.
pub async fn serve(
    broker: Arc<Broker>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let limit = Arc::new(Semaphore::new(broker.config.max_connections));
    let (stop_tx, _) = broadcast::channel::<()>(1);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = limit.clone().acquire_owned() => permit.expect("semaphore never closed"),
        };
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (socket, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let broker = broker.clone();
        let stop = stop_tx.subscribe();
        connections.spawn(async move {
            connection::serve(broker, socket, peer, stop).await;
            drop(permit);
        });
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let open = connections.len();
    tracing::info!(open, "stopped accepting; finishing in-flight requests");
    let _ = stop_tx.send(());
    let drained = tokio::time::timeout(Duration::from_secs(30), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(left = connections.len(), "connections did not finish in 30 s; closing them");
        connections.abort_all();
    }
}
