//! 5,000 appends to 500 chats from concurrent clients through all three nodes: every
//! acknowledged append appears exactly once, at its acknowledged seq, on all three replicas.

use raftchat_tests::Cluster;
use raftchat_tests::Opts;

use crate::check_all;
use crate::load;
use crate::make_chats;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_are_replicated_exactly_once_in_order() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let c = Cluster::start(Opts::default()).await?;
    let chats = make_chats(&c, 500).await?;
    let r = load(&c, &chats, 5_000, 64, "rep").await;
    assert_eq!(
        r.acks.len(),
        5_000,
        "every append in a healthy cluster is acknowledged (unknown {}, failed {})",
        r.unknown.len(),
        r.failed
    );
    for node in c.ids() {
        check_all(&c, node, "replica", &chats, &r).await?;
    }
    check_all(&c, 2, "linearizable", &chats, &r).await?;
    // The WAL counters behind the group-commit figures in docs/BENCHMARKS.md are served.
    let st = c.status(1).await?;
    let (fsyncs, entries) = (st["walFsyncs"].as_u64().unwrap_or(0), st["walEntries"].as_u64().unwrap_or(0));
    assert!(fsyncs > 0 && entries > 0, "{st}");
    Ok(())
}
