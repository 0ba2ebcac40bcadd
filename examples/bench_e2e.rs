//! End-to-end delivery latency: sender on node 1, recipient on node 2, both over WebSocket.
//!
//! `cargo build --release --bin raftchat && cargo run --release -p raftchat-tests --example bench_e2e -- [seconds]`
//!
//! For 1 and 64 sender/recipient pairs (each pair its own direct chat), each sender sends its
//! next message as soon as its previous one reached the recipient (closed loop). Reported: the
//! time from the sender's frame to the recipient's `message` frame, and from the frame to the
//! sender's `ack` (the commit).

use std::time::Duration;
use std::time::Instant;

use hdrhistogram::Histogram;
use raftchat_tests::chat::Api;
use raftchat_tests::chat::Ws;
use raftchat_tests::Cluster;
use raftchat_tests::Opts;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let secs: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let bin = raftchat_tests::release_binary()?;
    // One closed-loop sender exceeds the default per-user limit (50/s): lift it for the benchmark.
    let extra_args = ["--sends-per-sec", "1000000", "--sends-burst", "1000000"].map(String::from).to_vec();
    let c = Cluster::start(Opts { binary: Some(bin), extra_args, ..Default::default() }).await?;
    println!(
        "{:>7} {:>11} {:>9} {:>9} {:>9} {:>10} {:>10}",
        "senders", "delivered/s", "e2e p50", "e2e p99", "e2e p999", "ack p50", "ack p99"
    );
    for pairs in [1usize, 64] {
        let (a1, a2) = (Api::new(&c.url(1)), Api::new(&c.url(2)));
        let mut tasks = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(secs + 3);
        let measure_from = Instant::now() + Duration::from_secs(3);
        for p in 0..pairs {
            let run = uuid::Uuid::new_v4().simple().to_string();
            let s = a1.signup(&format!("s{p}-{}", &run[..8])).await?;
            let r = a2.signup(&format!("r{p}-{}", &run[..8])).await?;
            let chat = a1.direct(&s, r.user).await?;
            let mut ws_s = Ws::connect(&c.url(1), &s, false).await?;
            let mut ws_r = Ws::connect(&c.url(2), &r, true).await?;
            tasks.push(tokio::spawn(async move {
                let mut e2e = Histogram::<u64>::new(3).expect("histogram");
                let mut ack = Histogram::<u64>::new(3).expect("histogram");
                let mut i = 0u64;
                while Instant::now() < deadline {
                    i += 1;
                    let t0 = Instant::now();
                    let frame = serde_json::json!({ "type": "message", "chatId": chat, "text": "x".repeat(200), "clientMsgId": format!("e{i}") });
                    if ws_s.send(frame).await.is_err() {
                        break;
                    }
                    if let Err(e) = ws_r.wait_for(Duration::from_secs(10), "delivery", |f| f["type"] == "message" && f["seq"] == i).await {
                        eprintln!("pair {p}: {e}");
                        break;
                    }
                    let t_deliver = t0.elapsed();
                    if let Err(e) = ws_s.wait_for(Duration::from_secs(10), "ack", |f| f["type"] == "ack").await {
                        eprintln!("pair {p}: {e}");
                        break;
                    }
                    let t_ack = t0.elapsed();
                    if t0 >= measure_from {
                        let _ = e2e.record(t_deliver.as_micros() as u64);
                        let _ = ack.record(t_ack.as_micros() as u64);
                    }
                }
                (e2e, ack)
            }));
        }
        let mut e2e = Histogram::<u64>::new(3)?;
        let mut ack = Histogram::<u64>::new(3)?;
        for t in tasks {
            let (e, a) = t.await?;
            e2e.add(&e)?;
            ack.add(&a)?;
        }
        let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "{:>7} {:>11.0} {:>8.2}ms {:>8.2}ms {:>8.2}ms {:>9.2}ms {:>9.2}ms",
            pairs,
            e2e.len() as f64 / secs as f64,
            ms(&e2e, 0.5),
            ms(&e2e, 0.99),
            ms(&e2e, 0.999),
            ms(&ack, 0.5),
            ms(&ack, 0.99)
        );
    }
    Ok(())
}
