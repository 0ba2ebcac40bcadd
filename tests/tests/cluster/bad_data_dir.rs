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
