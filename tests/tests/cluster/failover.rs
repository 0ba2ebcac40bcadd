//! The node leading most groups is killed without warning under load: writes resume within
//! seconds and no acknowledged append is lost.

use std::collections::BTreeMap;
use std::time::Duration;
use std::time::Instant;

use raftchat_tests::Cluster;
use raftchat_tests::Opts;

use crate::check_all;
use crate::load;
use crate::make_chats;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_busiest_leader_loses_nothing() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let c = Cluster::start(Opts::default()).await?;
    let chats = make_chats(&c, 200).await?;
    let warm = load(&c, &chats, 1_000, 32, "warm").await;
    assert_eq!(warm.acks.len(), 1_000);

    let mut led: BTreeMap<u64, usize> = BTreeMap::new();
    for (_, leader) in c.leaders(1).await? {
        if let Some(l) = leader {
            *led.entry(l).or_default() += 1;
        }
    }
    let (&victim, &count) = led.iter().max_by_key(|(_, n)| **n).expect("some leader");
    eprintln!("leaders per node: {led:?}; killing node {victim} (leads {count} groups)");

    let kill = async {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        c.kill(victim);
        Instant::now()
    };
    let (r, killed_at) = tokio::join!(load(&c, &chats, 6_000, 32, "fail"), kill);

    // For every chat, how long after the kill its first write completed.
    let mut first: BTreeMap<uuid::Uuid, Instant> = BTreeMap::new();
    for a in r.acks.iter().filter(|a| a.at > killed_at) {
        let e = first.entry(a.chat).or_insert(a.at);
        *e = (*e).min(a.at);
    }
    let slowest = first.values().map(|t| t.duration_since(killed_at)).max().unwrap_or_default();
    eprintln!(
        "acked {}, unknown {}, failed {}; every chat written again within {slowest:?} of the kill",
        r.acks.len(),
        r.unknown.len(),
        r.failed
    );
    assert_eq!(first.len(), chats.len(), "some chats were never written after the kill");
    assert!(slowest < Duration::from_secs(15), "writes took {slowest:?} to resume on every chat");
    assert_eq!(r.failed, 0, "no append may fail for good while a quorum is up");

    let mut all = warm;
    all.acks.extend(r.acks);
    all.unknown.extend(r.unknown);
    for node in c.ids().into_iter().filter(|n| *n != victim) {
        check_all(&c, node, "linearizable", &chats, &all).await?;
    }
    // The victim comes back from its data directory and converges on the same logs.
    c.restart(victim)?;
    c.wait_ready(Duration::from_secs(60)).await?;
    check_all(&c, victim, "replica", &chats, &all).await?;
    Ok(())
}
