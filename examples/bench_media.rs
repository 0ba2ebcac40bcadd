//! Media throughput: uploads (acknowledged with two fsynced copies of three), whole downloads
//! from another node, and 64 KiB range reads (a video player seeking), on a local 3-node cluster.
//!
//! `cargo build --release --bin raftchat && cargo run --release -p raftchat-tests --example bench_media`
//!
//! Reported per file size: upload MiB/s and latency, download MiB/s from a node that did not
//! take the upload, and the peak RSS of the receiving node while uploading (the upload is
//! streamed to disk, so it should not grow with the file).

use std::time::Duration;
use std::time::Instant;

use hdrhistogram::Histogram;
use raftchat_tests::chat::Api;
use raftchat_tests::procstat;
use raftchat_tests::Cluster;
use raftchat_tests::Opts;

/// (file size in MiB, files).
const SIZES: [(usize, usize); 3] = [(1, 20), (16, 5), (100, 3)];
const RANGE_READS: usize = 200;
const RANGE_BYTES: u64 = 64 * 1024;

fn content(mib: usize, salt: usize) -> Vec<u8> {
    (0..mib * 1024 * 1024).map(|i| ((i / 7) ^ salt.wrapping_mul(2_654_435_761) ^ (i >> 11)) as u8).collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bin = raftchat_tests::release_binary()?;
    let extra_args = ["--media-max-mib", "1024"].map(String::from).to_vec();
    let c = Cluster::start(Opts { binary: Some(bin), extra_args, ..Default::default() }).await?;
    let (up, down) = (Api::new(&c.url(1)), Api::new(&c.url(2)));
    let user = up.signup(&format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])).await?;
    let pid = c.pid(1).ok_or_else(|| anyhow::anyhow!("node 1 is not running"))?;
    println!(
        "{:>8} {:>6} {:>12} {:>12} {:>14} {:>16}",
        "size", "files", "upload MiB/s", "upload p50", "download MiB/s", "peak RSS node 1"
    );
    let mut last_id = String::new();
    for (mib, files) in SIZES {
        let mut lat = Histogram::<u64>::new(3)?;
        let (mut up_secs, mut down_secs) = (0.0, 0.0);
        let rss_before = procstat::rss_bytes(pid);
        let mut peak = rss_before;
        for f in 0..files {
            let data = content(mib, f + mib * 1000);
            let sampler = {
                let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                let s = stop.clone();
                let h = tokio::spawn(async move {
                    let mut peak = 0;
                    while !s.load(std::sync::atomic::Ordering::Relaxed) {
                        peak = peak.max(procstat::rss_bytes(pid));
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    peak
                });
                (stop, h)
            };
            let t0 = Instant::now();
            let v = up.upload(&user, data.clone(), "video/mp4", "clip.mp4").await?;
            let took = t0.elapsed();
            sampler.0.store(true, std::sync::atomic::Ordering::Relaxed);
            peak = peak.max(sampler.1.await?);
            up_secs += took.as_secs_f64();
            lat.record(took.as_micros() as u64)?;
            let id = v["mediaId"].as_str().unwrap_or_default().to_string();
            let t1 = Instant::now();
            let got = down.download(&user, &id, None).await?;
            down_secs += t1.elapsed().as_secs_f64();
            anyhow::ensure!(got.status == 200 && got.body == data, "download of {id} differs");
            last_id = id;
        }
        let total = (mib * files) as f64;
        println!(
            "{:>5} MiB {:>6} {:>12.1} {:>9.1} ms {:>14.1} {:>10} MiB (+{})",
            mib,
            files,
            total / up_secs,
            lat.value_at_quantile(0.5) as f64 / 1000.0,
            total / down_secs,
            peak / (1024 * 1024),
            peak.saturating_sub(rss_before) / (1024 * 1024)
        );
    }
    // Seeking: 64 KiB ranges at spread offsets of the last (100 MiB) file, from node 3.
    let seek = Api::new(&c.url(3));
    let mut lat = Histogram::<u64>::new(3)?;
    let size = 100 * 1024 * 1024u64;
    for i in 0..RANGE_READS as u64 {
        let from = (i * 7_919 * 4096) % (size - RANGE_BYTES);
        let t0 = Instant::now();
        let r = seek.download(&user, &last_id, Some(&format!("bytes={from}-{}", from + RANGE_BYTES - 1))).await?;
        anyhow::ensure!(r.status == 206 && r.body.len() as u64 == RANGE_BYTES, "range read failed: {}", r.status);
        lat.record(t0.elapsed().as_micros() as u64)?;
    }
    println!(
        "range reads of 64 KiB from node 3: p50 {:.2} ms, p99 {:.2} ms ({RANGE_READS} reads)",
        lat.value_at_quantile(0.5) as f64 / 1000.0,
        lat.value_at_quantile(0.99) as f64 / 1000.0
    );
    Ok(())
}
