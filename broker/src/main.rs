//! `floe`: serve Kafka on a local WAL and an object store.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use floe_broker::broker::Broker;
use floe_broker::config::{Args, BrokerConfig};
use floe_storage::{Bucket, StoreConfig, StreamStore};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

/// Hostile array lengths in requests must not abort the process; see the module.
#[global_allocator]
static ALLOC: floe_protocol::alloc::GuardedAlloc = floe_protocol::alloc::GuardedAlloc;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLOE_LOG").unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = BrokerConfig::resolve(Args::parse())?;
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run(config))
}

async fn run(mut config: BrokerConfig) -> anyhow::Result<()> {
    let mut store_config = StoreConfig::new(config.data_dir.join("wal"));
    store_config.broker_id = config.broker_id;
    store_config.upload_interval = config.upload_interval;
    store_config.upload_bytes = config.upload_bytes;
    let bucket = Bucket::open(&config.object_store, store_config.object_timeout)?;
    let store = StreamStore::open(store_config, bucket)
        .await
        .with_context(|| format!("opening the stream store (object store {})", config.object_store))?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    // `--listen HOST:0` picks a free port; advertise the one we got.
    let bound = listener.local_addr()?;
    if config.advertise_port == 0 {
        config.advertise_port = i32::from(bound.port());
    }
    tracing::info!(
        listen = %bound,
        advertise = %format!("{}:{}", config.advertise_host, config.advertise_port),
        object_store = %config.object_store,
        data_dir = %config.data_dir.display(),
        broker_id = config.broker_id,
        broker_epoch = store.broker_epoch(),
        "floe is serving Kafka"
    );
    let broker = Arc::new(Broker::open(config, store.clone()).await.context("loading broker state")?);
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
    };
    floe_broker::server::serve(broker.clone(), listener, shutdown).await;
    let wal = store.wal_stats();
    tracing::info!(
        to_durable = %broker.produce_stats.to_durable.summary(),
        to_sent = %broker.produce_stats.to_sent.summary(),
        wal_queue_wait = %wal.queue_wait.summary(),
        wal_commit = %wal.commit.summary(),
        "produce latency on the broker since start"
    );
    store.shutdown().await.context("final upload at shutdown")?;
    tracing::info!("all data uploaded and committed; bye");
    Ok(())
}
