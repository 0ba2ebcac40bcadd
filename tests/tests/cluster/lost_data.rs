//! A member whose data directory was wiped must not rejoin as if new: it refuses to run and says
//! why, naming itself and the peer that knows it (ecosystem.md §4).

use std::time::Duration;

use raftchat_tests::Cluster;
use raftchat_tests::Opts;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_with_wiped_data_refuses_to_rejoin() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let c = Cluster::start(Opts { data_groups: 4, ..Default::default() }).await?;
    for victim in [3u64, 1] {
        c.kill(victim);
        std::fs::remove_dir_all(c.dir().join(format!("node-{victim}")))?;
        c.restart(victim)?;
        let code = c.wait_exit(victim, Duration::from_secs(30)).await;
        assert_eq!(code, Some(1), "node {victim} with wiped data must exit with an error");
        let log = c.log(victim);
        assert!(log.contains("holds no cluster state") && log.contains(&format!("node {victim}")), "{log}");
        assert!(!log.contains("panicked"), "{log}");
    }
    // The rest of the cluster is unharmed.
    assert!(c.ready(2).await);
    Ok(())
}
