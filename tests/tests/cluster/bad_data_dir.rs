//! A data directory of another cluster or node, or a corrupt one, makes the node refuse to
//! start with a clear message, never a panic.

use std::process::Command;
use std::time::Duration;

use raftchat_tests::Cluster;
use raftchat_tests::Opts;

/// Runs `raftchat node` to completion (it must exit by itself) and returns (exit code, stderr).
fn run_node(args: &[&str]) -> anyhow::Result<(i32, String)> {
    let bin = raftchat_tests::binary()?;
    let mut child = Command::new(bin)
        .arg("node")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait()? {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                std::io::Read::read_to_string(&mut e, &mut err)?;
            }
            return Ok((status.code().unwrap_or(-1), err));
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            anyhow::bail!("node did not exit on a bad data directory");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_data_directories_are_refused_with_a_message() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let c = Cluster::start(Opts { data_groups: 4, ..Default::default() }).await?;
    c.kill(1);
    let dir = c.dir().join("node-1");
    let d = dir.to_str().expect("utf-8 path");
    let common = ["--listen", "127.0.0.1:0", "--raft-listen", "127.0.0.1:0", "--data-dir", d];

    let (code, err) = run_node(&[&common[..], &["--node-id", "1", "--cluster-id", "another"]].concat())?;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("\"test-cluster\"") && err.contains("\"another\""), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let (code, err) = run_node(&[&common[..], &["--node-id", "7", "--cluster-id", "test-cluster"]].concat())?;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("node 1") && err.contains("node 7"), "{err}");

    // Flip a byte in the middle of the first WAL segment, and add a later segment so the damage
    // is not a torn tail.
    let wal = dir.join("wal");
    let first = wal.join(format!("{:016}.wal", 1));
    let mut bytes = std::fs::read(&first)?;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&first, &bytes)?;
    std::fs::write(wal.join(format!("{:016}.wal", 2)), b"RCWAL\0\0\0\x01\0\0\0\0\0\0\0")?;
    let (code, err) = run_node(&[&common[..], &["--node-id", "1", "--cluster-id", "test-cluster"]].concat())?;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("corrupt"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    Ok(())
}

/// A node of another cluster that dials a member is refused at the handshake, and both sides'
/// logs name both cluster ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_another_cluster_is_refused_at_the_handshake() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let c = Cluster::start(Opts { data_groups: 4, ..Default::default() }).await?;
    let dir = tempfile::tempdir()?;
    let rogue_raft = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.to_string();
    let data = dir.path().join("rogue");
    let log = std::fs::File::create(dir.path().join("rogue.log"))?;
    // Node id 1 dials every higher id: node 2 of the real cluster, at its real address.
    let peers = format!("1={rogue_raft},2={}", c.raft_addr(2));
    let mut rogue = Command::new(raftchat_tests::binary()?)
        .arg("node")
        .args(["--node-id", "1", "--cluster-id", "rogue-cluster", "--listen", "127.0.0.1:0"])
        .args(["--raft-listen", &rogue_raft, "--peers", &peers, "--data-dir"])
        .arg(&data)
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let found = raftchat_tests::eventually(Duration::from_secs(20), "the refusal in both logs", || async {
        let theirs = std::fs::read_to_string(dir.path().join("rogue.log")).unwrap_or_default();
        let ours = c.log(2);
        let named = |l: &str| l.contains("rogue-cluster") && l.contains("test-cluster");
        let r = theirs.lines().any(|l| l.contains("refused") && named(l));
        let o = ours.lines().any(|l| l.contains("refused") && named(l));
        (r && o).then_some(())
    })
    .await;
    let _ = rogue.kill();
    let _ = rogue.wait();
    found?;
    // The cluster is unharmed.
    c.wait_ready(Duration::from_secs(10)).await?;
    Ok(())
}
