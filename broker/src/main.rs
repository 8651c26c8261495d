//! `floe`: serve Kafka on a local WAL and an object store, as one broker of
//! the cluster that shares the bucket (a cluster of one by default).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use floe_broker::broker::Broker;
use floe_broker::config::{Args, BrokerConfig, Command};
use floe_broker::control_plane::ControlPlane;
use floe_broker::controller::{Controller, ControllerSettings};
use floe_broker::member::Member;
use floe_broker::ownership::{self, ControllerCommitter};
use floe_broker::producer_state::ProducerStates;
use floe_broker::proto;
use floe_storage::{cas, Bucket, StoreConfig, StoreContext, StreamStore, WalLock};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

/// Hostile array lengths in requests must not abort the process; see the module.
#[global_allocator]
static ALLOC: floe_protocol::alloc::GuardedAlloc = floe_protocol::alloc::GuardedAlloc;

fn main() -> std::process::ExitCode {
    match run_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // One line with every cause, and no backtrace: these are errors
            // for an operator (a taken port, a refused store), not bugs.
            tracing::error!("{error:#}");
            eprintln!("floe: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLOE_LOG").unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let command = args.command.clone();
    let config = BrokerConfig::resolve(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match command {
        Some(Command::Cluster { action }) => runtime.block_on(floe_broker::cluster_cli::run(&config, action)),
        None => runtime.block_on(run(config)),
    }
}

async fn run(mut config: BrokerConfig) -> anyhow::Result<()> {
    // Bind before anything touches the bucket: a start that cannot serve
    // must fail before it registers (and so before it fences anyone).
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let rpc_listener = TcpListener::bind(config.rpc_listen)
        .await
        .with_context(|| format!("cannot listen for the control plane on {}", config.rpc_listen))?;
    // `--listen HOST:0` picks a free port; advertise the one we got.
    let bound = listener.local_addr()?;
    if config.advertise_port == 0 {
        config.advertise_port = i32::from(bound.port());
    }
    let rpc_address = match &config.rpc_advertise {
        Some(a) => a.clone(),
        None => rpc_listener.local_addr()?.to_string(),
    };
    let wal_dir = config.data_dir.join("wal");
    let _wal_lock = WalLock::acquire(&wal_dir)?;

    let mut store_config = StoreConfig::new(&wal_dir);
    store_config.broker_id = config.broker_id;
    store_config.upload_interval = config.upload_interval;
    store_config.upload_bytes = config.upload_bytes;
    store_config.log_cache_bytes = config.log_cache_bytes;
    store_config.block_cache_bytes = config.block_cache_bytes;
    let bucket = Bucket::open(&config.object_store, store_config.object_timeout)?;
    if !bucket.is_local() {
        cas::check_atomic(&bucket)
            .await
            .with_context(|| format!("checking the object store {}", config.object_store))?;
    }

    let instance = format!("{}:{}", host_name(), wal_dir.display());
    let settings = ControllerSettings {
        broker_lease: config.broker_lease,
        controller_lease: config.controller_lease,
        retention: floe_broker::controller::retention::Defaults {
            ms: config.log_retention_ms,
            bytes: config.log_retention_bytes,
        },
        retention_check_interval: config.log_retention_check_interval,
        object_delete_delay: config.object_delete_delay,
        // A sweep follows the retention cadence, at most every ten minutes.
        orphan_sweep_interval: config.log_retention_check_interval.min(Duration::from_secs(600)),
        ..ControllerSettings::default()
    };
    let controller =
        Controller::new(bucket.clone(), config.broker_id, rpc_address.clone(), instance.clone(), settings);
    let (stop_tx, stop_rx) = watch::channel(false);
    let election = tokio::spawn(controller.clone().run(stop_rx.clone()));
    let control = ControlPlane::new(controller.clone());
    let mut rpc_stop = stop_rx.clone();
    let rpc_server = tokio::spawn(
        tonic::transport::Server::builder().add_service(control.service()).serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(rpc_listener),
            async move {
                let _ = rpc_stop.wait_for(|s| *s).await;
            },
        ),
    );

    let register = proto::RegisterRequest {
        broker_id: config.broker_id,
        kafka_host: config.advertise_host.clone(),
        kafka_port: config.advertise_port,
        rpc_address: rpc_address.clone(),
        instance,
    };
    let member = Member::join(control.clone(), bucket.clone(), register)
        .await
        .with_context(|| format!("joining the cluster on {}", config.object_store))?;
    let heartbeat = tokio::spawn(member.clone().heartbeat(config.broker_lease, stop_rx.clone()));

    let producers = Arc::new(ProducerStates::default());
    let committer = Arc::new(ControllerCommitter {
        control: control.clone(),
        broker_id: config.broker_id,
        broker_epoch: member.broker_epoch,
        producers: producers.clone(),
    });
    let owned = member.state().streams_of(config.broker_id).map(|(id, m)| (id, m.clone())).collect();
    let ctx =
        StoreContext { bucket, committer, lease: member.lease.clone(), broker_epoch: member.broker_epoch };
    let store = StreamStore::open(store_config, ctx, owned)
        .await
        .with_context(|| format!("opening the stream store (object store {})", config.object_store))?;
    tracing::info!(
        listen = %bound,
        advertise = %format!("{}:{}", config.advertise_host, config.advertise_port),
        rpc = %rpc_address,
        object_store = %config.object_store,
        data_dir = %config.data_dir.display(),
        broker_id = config.broker_id,
        broker_epoch = member.broker_epoch,
        "floe is serving Kafka"
    );
    member.attach_store(store.clone());
    let broker = Arc::new(Broker::new(config, store.clone(), member.clone(), producers));
    ownership::start(&broker).await;
    let compactor = (!broker.config.compaction_interval.is_zero()).then(|| {
        tokio::spawn(floe_broker::compaction::run(
            broker.clone(),
            floe_storage::compaction::CompactionConfig::default(),
            broker.config.compaction_interval,
            stop_rx.clone(),
        ))
    });
    let follower = {
        let b = broker.clone();
        tokio::spawn(member.clone().follow(stop_rx.clone(), move || {
            let b = b.clone();
            tokio::spawn(async move { ownership::reconcile(&b).await });
        }))
    };

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let fenced_member = member.clone();
    let fenced_store = store.clone();
    let drain_broker = broker.clone();
    let shutdown = async move {
        // Either side can learn it: a heartbeat, or a commit the controller refused.
        let fenced = async {
            while !fenced_member.is_fenced() && !fenced_store.is_fenced() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: draining and shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: draining and shutting down"),
            _ = fenced => return,
        }
        drain(&drain_broker).await;
    };
    floe_broker::server::serve(broker.clone(), listener, shutdown).await;
    let fenced = member.is_fenced() || store.is_fenced();
    let wal = store.wal_stats();
    tracing::info!(
        to_durable = %broker.produce_stats.to_durable.summary(),
        to_sent = %broker.produce_stats.to_sent.summary(),
        wal_queue_wait = %wal.queue_wait.summary(),
        wal_commit = %wal.commit.summary(),
        "produce latency on the broker since start"
    );
    let uploaded = if fenced { Ok(()) } else { store.shutdown().await };
    if uploaded.is_ok() && !fenced {
        // Everything is committed: end this incarnation now rather than
        // let the controller wait out its lease and read its WAL.
        let req = proto::UnregisterRequest { broker_id: member.broker_id, broker_epoch: member.broker_epoch };
        if let Err(status) = member.control.unregister(req).await {
            tracing::warn!(%status, "could not tell the controller this broker stopped; its lease will run out");
        }
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = follower.await;
        if let Some(c) = compactor {
            let _ = c.await;
        }
        let _ = heartbeat.await;
        let _ = election.await;
        let _ = rpc_server.await;
    })
    .await;
    if fenced {
        bail!("this broker was fenced (its lease ran out or a newer incarnation registered); it stopped without acknowledging more");
    }
    uploaded.context("final upload at shutdown")?;
    tracing::info!("all data uploaded and committed; bye");
    Ok(())
}

/// Before a clustered broker stops, everything it owns moves to the others
/// (bounded); a broker alone keeps its partitions and just uploads.
async fn drain(broker: &Arc<Broker>) {
    let me = broker.broker_id();
    let state = broker.metadata();
    let others = state.brokers.iter().any(|(id, b)| *id != me && !b.fenced);
    if !others || state.streams_of(me).next().is_none() {
        return;
    }
    let req = proto::AdminRequest {
        op: Some(proto::admin_request::Op::DrainBroker(proto::DrainBroker { broker_id: me })),
    };
    if let Err(status) = broker.member.control.admin(req, Duration::from_secs(10)).await {
        tracing::warn!(%status, "cannot drain through the controller; stopping with partitions in place");
        return;
    }
    let started = Instant::now();
    let mut seq = broker.member.watch_seq();
    while broker.metadata().streams_of(me).next().is_some() && started.elapsed() < Duration::from_secs(30) {
        let _ = tokio::time::timeout(Duration::from_millis(200), seq.changed()).await;
    }
    let left = broker.metadata().streams_of(me).count();
    tracing::info!(left, ms = started.elapsed().as_millis() as u64, "drained");
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}
