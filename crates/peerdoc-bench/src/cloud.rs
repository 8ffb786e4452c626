//! "After the events every device reconciles at once": N devices, each holding M
//! documents the cloud has never seen, dial the cloud at the same moment; how fast do
//! the documents land, and how long until each device holds a receipt for every one
//! of them ("safe to wipe")? Through one cloud node on sled (the baseline), one on
//! PostgreSQL, and two on one PostgreSQL database (devices spread over both), all in
//! this process on loopback (libp2p on 127.0.0.1, mDNS off). The PostgreSQL server is a
//! throwaway one started here (`initdb` into a temporary directory, Unix socket only),
//! as the tests start it.

#[path = "../../peerdoc-store-postgres/tests/support/pg.rs"]
mod pg;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use peerdoc_node::{DocumentId, Node, NodeHandle, PgConfig, PostgresStore, ReceiptStatus};
use tempfile::TempDir;

use crate::nodes::{guard, loopback_config};
use crate::report::{Row, Section};
use crate::sections::Plan;
use crate::stats::{Samples, ms, per_second};

/// Hang guard for one device's documents to be confirmed (never a measurement).
const SAFE_GUARD: Duration = Duration::from_secs(600);

/// How often a device's receipts are looked at (the resolution of "safe to wipe").
const POLL: Duration = Duration::from_millis(50);

/// Where the cloud keeps documents.
#[derive(Debug, Clone, Copy)]
enum Cloud {
    Sled,
    Postgres { nodes: usize },
}

impl Cloud {
    fn name(self) -> String {
        match self {
            Cloud::Sled => "1 cloud node on sled".into(),
            Cloud::Postgres { nodes: 1 } => "1 cloud node on PostgreSQL".into(),
            Cloud::Postgres { nodes } => format!("{nodes} cloud nodes on one PostgreSQL"),
        }
    }
}

/// What one run measured.
struct Outcome {
    documents: usize,
    /// From the dials until the last device was safe to wipe.
    all_safe: Duration,
    /// Per device, from the dials until it was safe to wipe.
    per_device: Samples,
}

struct Running {
    node: Node,
    _dir: TempDir,
}

async fn start(dir: TempDir, cloud: bool, postgres: Option<PgConfig>) -> anyhow::Result<Running> {
    let mut config = loopback_config(dir.path())?;
    config.cloud = cloud;
    config.postgres = postgres.map(PostgresStore);
    let node = guard("node start", Node::start(config)).await??;
    Ok(Running { node, _dir: dir })
}

async fn listen_addr(node: &NodeHandle) -> anyhow::Result<peerdoc_node::Multiaddr> {
    node.status()
        .await?
        .listen_addrs
        .into_iter()
        .find(|a| a.to_string().starts_with("/ip4/127.0.0.1/"))
        .ok_or_else(|| anyhow::anyhow!("no loopback address"))
}

/// Polls until every document of `own` on `device` is confirmed by a cloud. (Its other
/// documents, the rest of the team's, came from the cloud.)
async fn until_safe(
    device: NodeHandle,
    own: BTreeSet<DocumentId>,
    started: Instant,
) -> anyhow::Result<Duration> {
    let mut confirmed = (0, 0);
    // Longer than the usual guard: every device also downloads the whole team's work.
    let waited = tokio::time::timeout(SAFE_GUARD, async {
        loop {
            let docs = device.list().await?;
            let done = docs
                .iter()
                .filter(|d| own.contains(&d.id) && d.receipt == ReceiptStatus::Confirmed)
                .count();
            confirmed = (done, own.len());
            if done == own.len() {
                return Ok::<_, anyhow::Error>(started.elapsed());
            }
            tokio::time::sleep(POLL).await;
        }
    })
    .await;
    match waited {
        Ok(result) => result,
        Err(_) => anyhow::bail!(
            "a device's documents were not all confirmed within {} s ({} of {})",
            SAFE_GUARD.as_secs(),
            confirmed.0,
            confirmed.1
        ),
    }
}

async fn run(
    base: &Path,
    cloud: Cloud,
    database: Option<PgConfig>,
    devices: usize,
    docs_per_device: usize,
) -> anyhow::Result<Outcome> {
    let cloud_nodes = match cloud {
        Cloud::Sled => vec![start(tempfile::tempdir_in(base)?, true, None).await?],
        Cloud::Postgres { nodes } => {
            let mut started = Vec::new();
            for _ in 0..nodes {
                started.push(start(tempfile::tempdir_in(base)?, true, database.clone()).await?);
            }
            started
        }
    };
    let mut addrs = Vec::new();
    for c in &cloud_nodes {
        addrs.push(listen_addr(&c.node).await?);
    }
    let mut device_nodes = Vec::new();
    for d in 0..devices {
        let device = start(tempfile::tempdir_in(base)?, false, None).await?;
        let mut own = BTreeSet::new();
        for i in 0..docs_per_device {
            let content = serde_json::json!({
                "device": d, "table": i, "guests": ["Ada", "Grace"], "seats": 8,
            });
            own.insert(device.node.create(content, 0, None).await?);
        }
        device_nodes.push((device, own));
    }
    // Every device dials at once; each is timed from here to "safe to wipe".
    let started = Instant::now();
    let mut waits = Vec::new();
    for (d, (device, own)) in device_nodes.iter().enumerate() {
        let handle = device.node.handle();
        let addr = addrs[d % addrs.len()].clone();
        let own = own.clone();
        waits.push(tokio::spawn(async move {
            handle.dial(addr).await?;
            until_safe(handle, own, started).await
        }));
    }
    let mut per_device = Samples::new();
    let mut all_safe = Duration::ZERO;
    for wait in waits {
        let took = wait.await??;
        all_safe = all_safe.max(took);
        per_device.push(took);
    }
    let stopping = device_nodes.into_iter().map(|(device, _)| device);
    for running in stopping.chain(cloud_nodes) {
        running.node.shutdown().await;
    }
    Ok(Outcome {
        documents: devices * docs_per_device,
        all_safe,
        per_device,
    })
}

pub(crate) fn section(plan: &Plan, s: &mut Section) -> anyhow::Result<()> {
    let (devices, docs) = plan.sizes.cloud;
    // Outside CI only: with CI=true a missing PostgreSQL panics in start_or_skip.
    let Some(server) = pg::start_or_skip("the cloud benchmark") else {
        s.note("skipped: no PostgreSQL binaries (bash .ci/setup installs them)");
        return Ok(());
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut results = Vec::new();
    for (i, cloud) in [
        Cloud::Sled,
        Cloud::Postgres { nodes: 1 },
        Cloud::Postgres { nodes: 2 },
    ]
    .into_iter()
    .enumerate()
    {
        let database = format!("bench{i}");
        server.create_database(&database);
        let config = PgConfig::from_connection_string(&server.connection_string(&database))?;
        let dir = tempfile::tempdir_in(&plan.work_dir)?;
        let outcome = runtime.block_on(run(dir.path(), cloud, Some(config), devices, docs))?;
        results.push((cloud, outcome));
    }
    let (base_cloud, base) = &results[0];
    let baseline = base_cloud.name();
    let base_rate = per_second(base.documents, base.all_safe);
    for (cloud, outcome) in &results[1..] {
        let subject = format!("{}, {devices} devices x {docs} documents", cloud.name());
        s.row(Row::new(
            &subject,
            "documents/s until confirmed",
            "docs/s",
            Some(per_second(outcome.documents, outcome.all_safe)),
            &baseline,
            Some(base_rate),
        ));
        for p in [50.0, 99.0] {
            s.row(Row::new(
                &subject,
                format!("p{p:.0} time until a device's own documents are confirmed"),
                "ms",
                outcome.per_device.percentile_ms(p),
                &baseline,
                base.per_device.percentile_ms(p),
            ));
        }
        s.row(Row::new(
            &subject,
            "last device safe",
            "ms",
            Some(ms(outcome.all_safe)),
            &baseline,
            Some(ms(base.all_safe)),
        ));
    }
    s.note(format!("In this process: {devices} device nodes (sled) each create {docs} small documents offline, then all dial the cloud at once (with two cloud nodes, devices alternate between them); a device's work is safe when every document it created carries a cloud receipt (its list polled every {} ms; meanwhile it also receives the rest of the team's documents from the cloud, as a team member does). documents/s = all documents created / time until the last device's were confirmed. Cloud nodes run NodeConfig::cloud, libp2p on 127.0.0.1; PostgreSQL is a throwaway server on a Unix socket (fsync on, synchronous_commit on), started here, a fresh database per run. Devices are not split into teams: one cloud daemon serves one team today (docs/cloud.md).", POLL.as_millis()));
    Ok(())
}
