//! Users on different nodes chat 1:1; receipts reach the sender; a retried clientMsgId gets the
//! same seq; the brief's API shapes work as written.

use serde_json::json;

use raftchat_tests::chat::Ws;
use raftchat_tests::Cluster;
use raftchat_tests::Opts;

use crate::api;
use crate::users;
use crate::SECS_10;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn direct_chat_across_nodes_with_receipts_and_retries() -> anyhow::Result<()> {
    direct_chat(Opts { data_groups: 16, ..Default::default() }).await
}

/// The same over TLS: mutual TLS between nodes, HTTPS and WSS for the clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn direct_chat_over_tls() -> anyhow::Result<()> {
    direct_chat(Opts { data_groups: 16, secure: true, ..Default::default() }).await
}

async fn direct_chat(opts: Opts) -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let c = Cluster::start(opts).await?;
    let u = users(&c, "direct", 2).await?;
    let (alice, bob) = (&u[0], &u[1]);
    assert!(api(&c, 2).register("direct-0", "another-password").await.is_err(), "a taken name is refused");
    assert!(api(&c, 3).login("direct-0", "wrong-password").await.is_err(), "a wrong password is refused");

    let mut wa = Ws::connect(&c.url(1), alice, false).await?;
    let mut wb = Ws::connect(&c.url(3), bob, true).await?;
    // The brief's frame, exactly.
    wa.send(json!({ "type": "message", "to": bob.user, "text": "Hi" })).await?;
    let ack = wa.wait_for(SECS_10, "ack", |f| f["type"] == "ack").await?;
    assert_eq!((ack["seq"].as_u64(), ack["status"].as_str()), (Some(1), Some("sent")));
    let chat: uuid::Uuid = serde_json::from_value(ack["chatId"].clone())?;
    let m = wb.wait_for(SECS_10, "message", |f| f["type"] == "message").await?;
    assert_eq!(
        (m["from"].as_str(), m["text"].as_str(), m["seq"].as_u64()),
        (Some(alice.user.to_string().as_str()), Some("Hi"), Some(1))
    );
    assert!(m["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));

    // Asking twice for the direct chat gives the same chat.
    assert_eq!(api(&c, 2).direct(alice, bob.user).await?, chat);
    assert_eq!(api(&c, 3).direct(bob, alice.user).await?, chat);

    // The brief's REST send, and a retried clientMsgId through another node.
    let r = api(&c, 2).send_to_user(alice, bob.user, "via REST").await?;
    assert_eq!((r["seq"].as_u64(), r["status"].as_str()), (Some(2), Some("sent")));
    let r1 = api(&c, 1).send(alice, chat, "once", "cm-1").await?;
    let r2 = api(&c, 3).send(alice, chat, "once", "cm-1").await?;
    assert_eq!((r1["seq"].clone(), r1["messageId"].clone()), (r2["seq"].clone(), r2["messageId"].clone()));
    wa.send(json!({ "type": "message", "chatId": chat, "text": "once", "clientMsgId": "cm-1" })).await?;
    let ack = wa.wait_for(SECS_10, "ack of retry", |f| f["type"] == "ack" && f["clientMsgId"] == "cm-1").await?;
    assert_eq!(ack["seq"], r1["seq"]);
    let got = wb.messages(chat, 2, SECS_10).await?;
    assert_eq!(crate::seqs(&got), vec![2, 3]);

    // Bob reads: alice's connection gets the receipt, and bob's chat list shows no unread.
    wb.send(json!({ "type": "read", "chatId": chat, "seq": 3 })).await?;
    let rc = wa.wait_for(SECS_10, "read receipt", |f| f["type"] == "receipt" && f["read"] == 3).await?;
    assert_eq!(rc["userId"].as_str(), Some(bob.user.to_string().as_str()));
    let list = api(&c, 2).chats(bob).await?;
    assert_eq!(list.len(), 1);
    assert_eq!(
        (list[0]["lastSeq"].as_u64(), list[0]["readSeq"].as_u64(), list[0]["unread"].as_u64()),
        (Some(3), Some(3), Some(0))
    );
    // Alice's own messages are not unread for her, and her other device still receives them.
    let list = api(&c, 1).chats(alice).await?;
    assert_eq!((list[0]["lastSeq"].as_u64(), list[0]["unread"].as_u64()), (Some(3), Some(0)));
    let mut wa2 = Ws::connect(&c.url(3), alice, false).await?;
    assert_eq!(crate::seqs(&wa2.messages(chat, 3, SECS_10).await?), vec![1, 2, 3]);

    // History, oldest first; the sender sees each message's status.
    let h = api(&c, 3).history(bob, chat, 0).await?;
    assert_eq!(crate::seqs(&h), vec![1, 2, 3]);
    assert!(h.iter().all(|m| m.get("status").is_none()), "bob sees no status on alice's messages");
    let h = api(&c, 1).history(alice, chat, 0).await?;
    assert!(h.iter().all(|m| m["status"] == "read"), "{h:?}");
    drop(wb);
    api(&c, 2).send(alice, chat, "unseen", "cm-unseen").await?;
    let h = api(&c, 1).history(alice, chat, 3).await?;
    assert_eq!((h.len(), h[0]["status"].as_str()), (1, Some("sent")), "{h:?}");
    Ok(())
}
