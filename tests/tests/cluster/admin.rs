//! `raftchat admin status`: nodes up and down, leaders per group, and fault tolerance.

use std::process::Command;
use std::time::Duration;

use raftchat_tests::Cluster;
use raftchat_tests::Opts;

fn admin_status(c: &Cluster, node: u64) -> anyhow::Result<serde_json::Value> {
    let out = Command::new(raftchat_tests::binary()?)
        .args(["admin", "--server", &c.url(node), "--output", "json", "status"])
        .output()?;
    anyhow::ensure!(out.status.success(), "admin status failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(serde_json::from_slice(&out.stdout)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_status_reports_nodes_leaders_and_fault_tolerance() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let c = Cluster::start(Opts { data_groups: 4, ..Default::default() }).await?;
    let r = admin_status(&c, 2)?;
    assert_eq!(r["faultTolerance"]["canLoseNodes"], 1, "{r}");
    assert_eq!(r["nodes"].as_array().map(|n| n.len()), Some(3));
    let groups = r["groups"].as_array().cloned().unwrap_or_default();
    assert_eq!(groups.len(), 5, "meta + 4 data groups");
    assert!(groups.iter().all(|g| g["leader"].is_u64()), "{r}");
    // Storage per group: every group holds at least its membership entries.
    assert!(groups.iter().all(|g| g["storageBytes"].as_u64().is_some_and(|b| b > 0)), "{r}");

    c.kill(3);
    let r = raftchat_tests::eventually(Duration::from_secs(30), "node 3 down, leaders re-elected", || async {
        let r = admin_status(&c, 1).ok()?;
        let down = r["nodes"].as_array()?.iter().any(|n| n["nodeId"] == 3 && n["up"] == false);
        let led = r["groups"].as_array()?.iter().all(|g| g["leader"].is_u64());
        (down && led).then_some(r)
    })
    .await?;
    assert_eq!(r["faultTolerance"]["canLoseNodes"], 0, "{r}");
    let table = Command::new(raftchat_tests::binary()?).args(["admin", "--server", &c.url(2), "status"]).output()?;
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("DOWN") && text.contains("can lose 0 nodes"), "{text}");
    Ok(())
}
