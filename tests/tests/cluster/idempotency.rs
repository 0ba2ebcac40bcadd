//! The same (chat, sender, client message id) appended twice, also across a leader change and
//! through another node, gives one entry and the same seq.

use std::time::Duration;

use raftchat_tests::client;
use raftchat_tests::Cluster;
use raftchat_tests::Opts;

use crate::make_chats;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retries_return_the_original_seq() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let c = Cluster::start(Opts { data_groups: 8, ..Default::default() }).await?;
    let t = make_chats(&c, 1).await?[0];
    let ok = |r: Result<client::Appended, client::AppendError>| r.map_err(|e| anyhow::anyhow!("{e:?}"));

    let x1 = ok(client::append(&c.http, &c.url(1), t.id, t.a, "x", "hello").await)?;
    let x2 = ok(client::append(&c.http, &c.url(2), t.id, t.a, "x", "hello").await)?;
    assert_eq!((x1.seq, x1.message_id, x1.duplicate), (x2.seq, x2.message_id, !x2.duplicate));
    let y = ok(client::append(&c.http, &c.url(3), t.id, t.a, "y", "again").await)?;
    assert_eq!(y.seq, x1.seq + 1);
    // Another sender may use the same client message id: it is a different message.
    let bx = ok(client::append(&c.http, &c.url(3), t.id, t.b, "x", "from b").await)?;
    assert_eq!(bx.seq, y.seq + 1);

    // Kill the chat's leader, then retry "x" through a survivor.
    let group = {
        let v: serde_json::Value =
            c.http.get(format!("{}/internal/v1/chats/{}/messages", c.url(1), t.id)).send().await?.json().await?;
        v["group"].as_u64().expect("group")
    };
    let leader = c.leaders(1).await?.into_iter().find(|(g, _)| *g == group).and_then(|(_, l)| l).expect("leader");
    c.kill(leader);
    let survivor = c.ids().into_iter().find(|n| *n != leader).expect("survivor");
    let x3 = raftchat_tests::eventually(Duration::from_secs(20), "write after leader change", || async {
        client::append(&c.http, &c.url(survivor), t.id, t.a, "x", "hello").await.ok()
    })
    .await?;
    assert_eq!((x3.seq, x3.message_id, x3.duplicate), (x1.seq, x1.message_id, true));
    let z = ok(client::append(&c.http, &c.url(survivor), t.id, t.a, "z", "new").await)?;
    assert_eq!(z.seq, bx.seq + 1);

    let log = client::history(&c.http, &c.url(survivor), t.id, "linearizable").await?;
    let ids: Vec<(u64, &str)> = log.iter().map(|m| (m.seq, m.client_msg_id.as_str())).collect();
    assert_eq!(ids, vec![(1, "x"), (2, "y"), (3, "x"), (4, "z")]);
    assert_eq!(log[2].from, t.b);
    Ok(())
}
