//! Without `--internal-api`, the unauthenticated chat and presence endpoints do not exist, and
//! the operator endpoints (status, cluster layout, metrics) answer only to the admin token;
//! `--public-metrics` opens `/metrics` alone.

use std::process::Command;
use std::process::Stdio;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_write_api_is_off_by_default() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let dir = tempfile::tempdir()?;
    let (http_port, raft_port) = {
        let a = std::net::TcpListener::bind("127.0.0.1:0")?;
        let b = std::net::TcpListener::bind("127.0.0.1:0")?;
        (a.local_addr()?.port(), b.local_addr()?.port())
    };
    let token = "internal-api-test-admin-token-0123";
    let mut child = Command::new(raftchat_tests::binary()?)
        .args(["node", "--node-id", "1", "--data-groups", "2", "--admin-token", token, "--public-metrics"])
        .args(["--listen", &format!("127.0.0.1:{http_port}"), "--raft-listen", &format!("127.0.0.1:{raft_port}")])
        .arg("--data-dir")
        .arg(dir.path().join("n1"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let base = format!("http://127.0.0.1:{http_port}");
    let http = reqwest::Client::new();
    let ready = raftchat_tests::eventually(Duration::from_secs(30), "single node ready", || async {
        let r = http.get(format!("{base}/readyz")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    let result = async {
        ready?;
        let body = serde_json::json!({ "kind": "group", "creator": uuid::Uuid::new_v4() });
        let r = http.post(format!("{base}/internal/v1/chats")).json(&body).send().await?;
        anyhow::ensure!(r.status().as_u16() == 404, "unauthenticated chat API answered {}", r.status());
        let r = http.get(format!("{base}/internal/v1/presence/{}", uuid::Uuid::new_v4())).send().await?;
        anyhow::ensure!(r.status().as_u16() == 404, "unauthenticated presence API answered {}", r.status());
        for path in ["/internal/v1/status", "/internal/v1/cluster", "/internal/v1/admin/plan"] {
            let r = http.get(format!("{base}{path}")).send().await?;
            anyhow::ensure!(r.status().as_u16() == 401, "{path} without the admin token answered {}", r.status());
            let r = http.get(format!("{base}{path}")).bearer_auth("wrong-token-wrong-token").send().await?;
            anyhow::ensure!(r.status().as_u16() == 401, "{path} with a wrong token answered {}", r.status());
            let r = http.get(format!("{base}{path}")).bearer_auth(token).send().await?;
            anyhow::ensure!(r.status().is_success(), "{path} with the admin token answered {}", r.status());
        }
        let r = http.get(format!("{base}/metrics")).send().await?;
        anyhow::ensure!(r.status().is_success(), "metrics answered {}", r.status());
        Ok(())
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    result
}
