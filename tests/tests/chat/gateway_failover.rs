//! A gateway node killed under load: its clients reconnect to another node and resume without
//! gap or loss.

use std::collections::BTreeMap;
use std::time::Duration;

use raftchat_tests::chat::Ws;
use raftchat_tests::Cluster;
use raftchat_tests::Opts;

use crate::api;
use crate::users;
use crate::SECS_30;

const MESSAGES: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_of_a_killed_gateway_resume_without_gap_or_loss() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let c = Cluster::start(Opts { data_groups: 16, ..Default::default() }).await?;
    let u = users(&c, "gw", 2).await?;
    let (alice, bob) = (u[0].clone(), u[1].clone());
    let chat = api(&c, 2).direct(&alice, bob.user).await?;
    let mut first = Ws::connect(&c.url(1), &bob, true).await?;

    // Alice sends through node 2, retrying each message with its clientMsgId until acknowledged.
    let (a2, a3) = (api(&c, 2), api(&c, 3));
    let sender = tokio::spawn(async move {
        let mut acked = BTreeMap::new();
        for i in 0..MESSAGES {
            let text = format!("gw {i}");
            let mut tries = 0;
            loop {
                let a = if tries % 2 == 0 { &a2 } else { &a3 };
                match a.send(&alice, chat, &text, &format!("gw-{i}")).await {
                    Ok(v) => {
                        acked.insert(v["seq"].as_u64().unwrap_or(0), text);
                        break;
                    }
                    Err(_) if tries < 100 => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(acked)
    });

    let mut received: BTreeMap<u64, String> = BTreeMap::new();
    let record = |frames: &[serde_json::Value], received: &mut BTreeMap<u64, String>| -> anyhow::Result<()> {
        for f in frames {
            let seq = f["seq"].as_u64().unwrap_or(0);
            let text = f["text"].as_str().unwrap_or("").to_string();
            if let Some(prev) = received.insert(seq, text.clone()) {
                anyhow::ensure!(prev == text, "seq {seq} delivered with two texts");
            }
        }
        Ok(())
    };
    let got = first.messages(chat, 50, SECS_30).await?;
    let s = crate::seqs(&got);
    anyhow::ensure!(s == (1..=50).collect::<Vec<u64>>(), "first connection out of order: {s:?}");
    record(&got, &mut received)?;
    c.kill(1);
    // Drain what the dead connection still had buffered; it must stay in order.
    let mut last = 50;
    while let Some(f) = first.next(Duration::from_millis(500)).await {
        if f["type"] == "message" {
            let seq = f["seq"].as_u64().unwrap_or(0);
            anyhow::ensure!(seq == last + 1, "gap on the first connection: {last} then {seq}");
            last = seq;
            record(&[f], &mut received)?;
        }
    }
    let acked = sender.await??;
    assert_eq!(acked.len(), MESSAGES);
    let mut second = raftchat_tests::eventually(SECS_30, "reconnect to node 3", || async {
        Ws::connect(&c.url(3), &bob, true).await.ok()
    })
    .await?;
    let max = *acked.keys().max().unwrap_or(&0);
    let mut prev = 0;
    while !(1..=max).all(|s| received.contains_key(&s)) {
        let f = second.wait_for(SECS_30, "resumed messages", |f| f["type"] == "message").await?;
        let seq = f["seq"].as_u64().unwrap_or(0);
        anyhow::ensure!(prev == 0 || seq == prev + 1, "gap on the second connection: {prev} then {seq}");
        prev = seq;
        record(&[f], &mut received)?;
    }
    for (seq, text) in &acked {
        assert_eq!(received.get(seq), Some(text), "acknowledged seq {seq}");
    }
    assert_eq!(received.len() as u64, max, "no message beyond the acknowledged ones");
    Ok(())
}
