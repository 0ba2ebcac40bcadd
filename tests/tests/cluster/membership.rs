//! Growing and shrinking a cluster under load: `raftchat admin members add`, `rebalance` and
//! `members remove`, while a client writes. No acknowledged message may be lost, every replica
//! must end equal, and every node must end with its share of replicas.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use raftchat_tests::client;
use raftchat_tests::Cluster;
use raftchat_tests::Opts;
use uuid::Uuid;

fn admin(c: &Cluster, node: u64, args: &[&str]) -> anyhow::Result<String> {
    let out = c.admin_command(node)?.args(args).output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    anyhow::ensure!(out.status.success(), "admin {args:?} failed: {text}");
    Ok(text)
}

async fn layout(c: &Cluster, node: u64) -> anyhow::Result<serde_json::Value> {
    Ok(c.http.get(format!("{}/internal/v1/cluster", c.url(node))).send().await?.json().await?)
}

/// Replicas per node in the layout.
fn load(l: &serde_json::Value) -> BTreeMap<u64, usize> {
    let mut load: BTreeMap<u64, usize> =
        l["nodes"].as_array().into_iter().flatten().filter_map(|n| n["nodeId"].as_u64()).map(|n| (n, 0)).collect();
    for g in l["groups"].as_array().into_iter().flatten() {
        for r in g["replicas"].as_array().into_iter().flatten().filter_map(|r| r.as_u64()) {
            *load.entry(r).or_default() += 1;
        }
    }
    load
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grow_three_to_five_under_load_then_remove_one() -> anyhow::Result<()> {
    grow_and_shrink(raftchat_tests::tls::secure_by_env()).await
}

/// The same over TLS: the added nodes join with their own certificates from the cluster CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grow_three_to_five_over_tls() -> anyhow::Result<()> {
    grow_and_shrink(true).await
}

async fn grow_and_shrink(secure: bool) -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    // Small snapshots: new replicas catch up by streamed snapshot, not only by log.
    let mut c =
        Cluster::start(Opts { data_groups: 8, snapshot_every: 200, logs_kept: 50, secure, ..Default::default() })
            .await?;
    let (sender, other) = (Uuid::new_v4(), Uuid::new_v4());
    let chats: Vec<Uuid> = (0..8).map(|_| Uuid::new_v4()).collect();
    for chat in &chats {
        client::create_chat(&c.http, &c.url(1), *chat, "direct", sender, &[other]).await?;
    }
    // A writer that keeps going through every change, through nodes 2 and 3 (which stay).
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (http, urls, chats, stop) = (c.http.clone(), vec![c.url(2), c.url(3)], chats.clone(), stop.clone());
        tokio::spawn(async move {
            let mut acked: Vec<(Uuid, String, u64)> = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let chat = chats[i as usize % chats.len()];
                let id = format!("m{i}");
                // Retried with the same id until it is acknowledged: idempotent.
                for attempt in 0..50 {
                    match client::append(&http, &urls[(i as usize + attempt) % 2], chat, sender, &id, "x").await {
                        Ok(a) => {
                            acked.push((chat, id.clone(), a.seq));
                            break;
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            }
            acked
        })
    };

    for _ in 0..2 {
        let id = c.add_node().await?;
        let out = admin(
            &c,
            1,
            &[
                "members",
                "add",
                "--id",
                &id.to_string(),
                "--raft-addr",
                &c.raft_addr(id),
                "--api-addr",
                &c.api_addr(id),
            ],
        )?;
        assert!(out.contains(&format!("node {id} is a member")), "{out}");
    }
    // Each admin call waits until the node it went through applied the change: read that one.
    let l = layout(&c, 1).await?;
    assert_eq!(l["nodes"].as_array().map(Vec::len), Some(5), "{l}");
    admin(&c, 2, &["rebalance"])?;
    let l = layout(&c, 2).await?;
    let spread = load(&l);
    assert!(spread.values().all(|n| *n > 0), "every node holds replicas: {spread:?}");
    let (min, max) = (spread.values().min().copied().unwrap_or(0), spread.values().max().copied().unwrap_or(0));
    assert!(max - min <= 1, "evenly: {spread:?}");
    // Leadership was spread too: no node leads more than two groups more than another.
    let st: serde_json::Value = serde_json::from_str(&admin(&c, 2, &["--output", "json", "status"])?)?;
    let mut leads: BTreeMap<u64, usize> = spread.keys().map(|n| (*n, 0)).collect();
    for g in st["groups"].as_array().into_iter().flatten().filter(|g| g["group"] != 0) {
        if let Some(l) = g["leader"].as_u64() {
            *leads.entry(l).or_default() += 1;
        }
    }
    let (lmin, lmax) = (leads.values().min().copied().unwrap_or(0), leads.values().max().copied().unwrap_or(0));
    assert!(lmax - lmin <= 2, "leaders spread: {leads:?}");
    let out = admin(&c, 2, &["rebalance"])?;
    assert!(out.contains("nothing to move"), "a second rebalance has nothing to do: {out}");

    // Removing node 1 moves its replicas away first, then takes it out of the cluster.
    admin(&c, 2, &["members", "remove", "1"])?;
    let l = layout(&c, 2).await?;
    let spread = load(&l);
    assert!(!spread.contains_key(&1), "{spread:?}");
    assert_eq!(spread.len(), 4);
    // It was told, and stops by itself, saying why.
    let code = c.wait_exit(1, Duration::from_secs(30)).await;
    if code.is_none() {
        let log = c.log(1);
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        panic!(
            "the removed node 1 is still running; its log ends:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    assert!(c.log(1).contains("node 1 was removed from cluster"), "node 1 does not say why it stopped");

    stop.store(true, Ordering::SeqCst);
    let acked = writer.await?;
    assert!(acked.len() > 50, "the writer kept writing: {} acked", acked.len());
    // Every acknowledged message, at its seq, through the leader and on every replica.
    let l = layout(&c, 2).await?;
    for chat in &chats {
        let lin = client::history(&c.http, &c.url(2), *chat, "linearizable").await?;
        let at: BTreeMap<String, u64> = lin.iter().map(|m| (m.client_msg_id.clone(), m.seq)).collect();
        for (ch, id, seq) in acked.iter().filter(|(ch, _, _)| ch == chat) {
            assert_eq!(at.get(id), Some(seq), "acked {id} of {ch} at {seq}");
        }
        let seqs: Vec<u64> = lin.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=lin.len() as u64).collect::<Vec<_>>(), "no gaps");
        let url = format!("{}/internal/v1/chats/{chat}/messages?limit=1", c.url(2));
        let group = c.http.get(url).send().await?.json::<serde_json::Value>().await?["group"].clone();
        let replicas: Vec<u64> = l["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|g| g["group"] == group)
            .map(|g| g["replicas"].as_array().into_iter().flatten().filter_map(|r| r.as_u64()).collect())
            .unwrap_or_default();
        assert_eq!(replicas.len(), 3);
        for r in replicas {
            raftchat_tests::eventually(Duration::from_secs(30), "replica caught up", || async {
                let h = client::history(&c.http, &c.url(r), *chat, "replica").await.ok()?;
                (h.len() == lin.len()).then_some(())
            })
            .await?;
            let h = client::history(&c.http, &c.url(r), *chat, "replica").await?;
            assert!(h.iter().zip(&lin).all(|(a, b)| a.seq == b.seq && a.client_msg_id == b.client_msg_id));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_back_on_a_new_address_rejoins() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let mut c = Cluster::start(Opts { data_groups: 4, ..Default::default() }).await?;
    let (sender, other) = (Uuid::new_v4(), Uuid::new_v4());
    let chat = Uuid::new_v4();
    client::create_chat(&c.http, &c.url(1), chat, "direct", sender, &[other]).await?;
    client::append(&c.http, &c.url(1), chat, sender, "before", "x").await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
    c.readdress(3)?;
    // Its identity is its id: telling the cluster its new address is all it takes.
    admin(&c, 1, &["members", "add", "--id", "3", "--raft-addr", &c.raft_addr(3), "--api-addr", &c.api_addr(3)])?;
    c.wait_ready(Duration::from_secs(60)).await?;
    client::append(&c.http, &c.url(2), chat, sender, "after", "x").await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
    raftchat_tests::eventually(Duration::from_secs(30), "node 3 holds both messages", || async {
        let h = client::history(&c.http, &c.url(3), chat, "replica").await.ok()?;
        (h.len() == 2).then_some(())
    })
    .await?;
    // Every node, node 3 included, ends up with the new address in its layout.
    for id in c.ids() {
        let want = c.raft_addr(3);
        raftchat_tests::eventually(Duration::from_secs(30), "the new address in every layout", || async {
            let l = layout(&c, id).await.ok()?;
            let me = l["nodes"].as_array()?.iter().find(|n| n["nodeId"] == 3)?.clone();
            (me["raftAddr"].as_str() == Some(want.as_str())).then_some(())
        })
        .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_removed_while_down_stops_when_it_comes_back() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let c = Cluster::start(Opts { nodes: 4, data_groups: 4, ..Default::default() }).await?;
    c.kill(4);
    admin(&c, 1, &["members", "remove", "4"])?;
    c.restart(4)?;
    let code = c.wait_exit(4, Duration::from_secs(60)).await;
    assert!(code.is_some_and(|c| c != 0), "a removed node that comes back must stop: {code:?}");
    assert!(c.log(4).contains("node 4 was removed from cluster"), "node 4 does not say why it stopped");
    // The others did not mind.
    let l = layout(&c, 2).await?;
    assert_eq!(l["nodes"].as_array().map(Vec::len), Some(3), "{l}");
    c.wait_ready(Duration::from_secs(30)).await?;
    Ok(())
}
