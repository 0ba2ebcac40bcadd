//! The workload: users in group chats, workers that send and read, subscriptions that record
//! deliveries, and the final reads after the faults heal.
//!
//! Each worker is a client session (odd ones send over a WebSocket, even ones over REST): it
//! sends messages with unique client ids (`w3-17`), retries
//! a send whose outcome it does not know with the same id (as a real client must), now and then
//! re-sends a message it already saw acknowledged (a client whose ack got lost: idempotency must
//! return the same seq), and reads windows of a chat, linearizable or local. After an `info`
//! the worker takes a fresh process id, since the old operation may still be in flight.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde_json::json;
use serde_json::Value;
use tokio::time::Instant;
use uuid::Uuid;

use crate::client::Client;
use crate::client::Outcome;
use crate::client::WsSender;
use crate::db::Db;
use crate::recorder::Ev;
use crate::recorder::Recorder;

#[derive(Debug, Clone)]
pub struct WorkloadOpts {
    pub workers: usize,
    pub chats: usize,
    pub subscribers: usize,
    /// Operations per second over all workers.
    pub rate: f64,
    pub op_timeout: Duration,
    /// Share of sends that re-send an already acknowledged message.
    pub resend: f64,
}

/// Users and chats made before the clock starts.
pub struct Setup {
    pub sessions: Vec<raftchat_tests::chat::Session>,
    pub chats: Vec<Uuid>,
}

/// Registers one user per worker and subscriber and the chats, all members of every chat (each
/// invited by the first user and accepting).
pub async fn setup(db: &Db, o: &WorkloadOpts, run: &str) -> anyhow::Result<Setup> {
    let users = o.workers.max(o.subscribers).max(2);
    let mut sessions = Vec::new();
    for i in 0..users {
        let api = raftchat_tests::chat::Api::new(&db.url(1 + (i as u64 % db.opts.nodes)));
        let name = format!("j{run}u{i}");
        sessions.push(retry(|| api.signup(&name)).await?);
    }
    let ids: Vec<Uuid> = sessions.iter().skip(1).map(|s| s.user).collect();
    let api = raftchat_tests::chat::Api::new(&db.url(1));
    let mut chats = Vec::new();
    for c in 0..o.chats {
        let name = format!("jepsen-{c}");
        let chat = retry(|| api.group_invite(&sessions[0], &name, &ids)).await?;
        // Members join by accepting the invite (joining again is a no-op, so retries are safe).
        for s in &sessions[1..] {
            retry(|| api.join(s, chat)).await?;
        }
        chats.push(chat);
    }
    Ok(Setup { sessions, chats })
}

async fn retry<T, F, Fut>(mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// A retry that the worker owes: the same message id, the next attempt.
struct Owed {
    chat: Uuid,
    msg_id: String,
    attempt: u32,
}

const ATTEMPTS_MAX: u32 = 4;
/// How long a worker avoids a gateway that failed it.
const AVOID_FOR: Duration = Duration::from_secs(2);

/// Runs worker `w` until `until`.
pub async fn worker(w: usize, db: Arc<Db>, setup: Arc<Setup>, rec: Arc<Recorder>, o: WorkloadOpts, until: Instant) {
    let session = format!("s{w}");
    let Ok(client) = Client::new(setup.sessions[w].token.clone(), o.op_timeout) else { return };
    let mut process = w as u64;
    let mut next_msg = 0u64;
    let mut owed: Option<Owed> = None;
    let mut acked: Vec<(Uuid, String)> = Vec::new();
    let mut heads: Vec<u64> = vec![0; setup.chats.len()];
    let mut avoid: Vec<Instant> = vec![Instant::now(); db.opts.nodes as usize];
    let mut ws: Option<WsSender> = None;
    let interval = Duration::from_secs_f64(o.workers as f64 / o.rate.max(0.1));
    let mut next_at = Instant::now() + interval.mul_f64(rand::thread_rng().gen::<f64>());
    while Instant::now() < until {
        tokio::time::sleep_until(next_at).await;
        next_at += interval;
        if next_at < Instant::now() {
            next_at = Instant::now();
        }
        let (node, pick, chat_ix) = {
            let mut r = rand::thread_rng();
            // Like a real client, avoid a gateway that just failed us, for a while, unless
            // every one did.
            let now = Instant::now();
            let fine: Vec<u64> = (1..=db.opts.nodes).filter(|n| avoid[*n as usize - 1] <= now).collect();
            let node = if fine.is_empty() { r.gen_range(1..=db.opts.nodes) } else { fine[r.gen_range(0..fine.len())] };
            (node, r.gen::<f64>(), r.gen_range(0..setup.chats.len()))
        };
        let base = db.client_url(node);
        let nname = crate::db::name(node);
        // A retry owed comes first; then sends, re-sends and reads in proportion.
        let send = match owed.take() {
            Some(o) => Some(o),
            None if pick < o.resend && !acked.is_empty() => {
                let (chat, msg_id) = acked[rand::thread_rng().gen_range(0..acked.len())].clone();
                Some(Owed { chat, msg_id, attempt: 2 })
            }
            None if pick < 0.6 => {
                next_msg += 1;
                Some(Owed { chat: setup.chats[chat_ix], msg_id: format!("w{w}-{next_msg}"), attempt: 1 })
            }
            None => None,
        };
        if let Some(s) = send {
            // Odd workers send over a WebSocket (kept to one gateway until it fails), even ones
            // over REST: both paths must keep the same promises.
            let via_ws = w % 2 == 1;
            if via_ws && ws.as_ref().is_none_or(|c| avoid[c.node as usize - 1] > Instant::now()) {
                ws = WsSender::connect(&base, node, &setup.sessions[w]).await;
                if ws.is_none() {
                    avoid[node as usize - 1] = Instant::now() + AVOID_FOR;
                    owed = Some(s);
                    continue;
                }
            }
            let nname = match &ws {
                Some(c) if via_ws => crate::db::name(c.node),
                _ => nname.clone(),
            };
            let chat = s.chat.to_string();
            let ev = |kind: &'static str, value: Value| Ev {
                process: json!(process),
                session: Some(&session),
                kind,
                f: "send",
                chat: Some(&chat),
                node: Some(&nname),
                value,
            };
            let via = if via_ws { "ws" } else { "rest" };
            rec.record(ev("invoke", json!({ "msg_id": s.msg_id, "attempt": s.attempt, "via": via })));
            let (out, gateway) = match ws.as_mut().filter(|_| via_ws) {
                Some(c) => {
                    let (out, usable) = c.send(s.chat, &s.msg_id, o.op_timeout).await;
                    let at = c.node;
                    if !usable {
                        ws = None;
                    }
                    (out, at)
                }
                None => (client.send(&base, s.chat, &s.msg_id).await, node),
            };
            match finish(&rec, &ev, out, &mut avoid[gateway as usize - 1]) {
                Done::Ok(_) => {
                    if s.attempt == 1 || !acked.iter().any(|(_, m)| *m == s.msg_id) {
                        acked.push((s.chat, s.msg_id.clone()));
                    }
                }
                Done::Failed => {}
                Done::Unknown => {
                    process += o.workers as u64;
                    if s.attempt < ATTEMPTS_MAX {
                        owed = Some(Owed { attempt: s.attempt + 1, ..s });
                    }
                }
            }
            continue;
        }
        let linearizable = pick < 0.85;
        let mode = if linearizable { "linearizable" } else { "local" };
        let from = heads[chat_ix].saturating_sub(20).max(1);
        let chat = setup.chats[chat_ix].to_string();
        // Local reads promise no session guarantees across gateways: they carry no session.
        let sess = linearizable.then_some(session.as_str());
        let ev = |kind: &'static str, value: Value| Ev {
            process: json!(process),
            session: sess,
            kind,
            f: "read",
            chat: Some(&chat),
            node: Some(&nname),
            value,
        };
        rec.record(ev("invoke", json!({ "from": from, "mode": mode })));
        let out = client.read(&base, setup.chats[chat_ix], from, mode).await;
        match finish(&rec, &ev, out, &mut avoid[node as usize - 1]) {
            Done::Ok(v) => heads[chat_ix] = heads[chat_ix].max(v["head"].as_u64().unwrap_or(0)),
            Done::Failed => {}
            Done::Unknown => process += o.workers as u64,
        }
    }
}

/// How an operation ended, once recorded.
enum Done {
    Ok(Value),
    Failed,
    Unknown,
}

/// Records the completion of the operation `ev` describes. After a failure or an unknown
/// outcome the worker avoids that gateway for a while, like a real client.
fn finish<'a>(rec: &Recorder, ev: &dyn Fn(&'static str, Value) -> Ev<'a>, out: Outcome, avoid: &mut Instant) -> Done {
    match out {
        Outcome::Ok(v) => {
            rec.record(ev("ok", v.clone()));
            Done::Ok(v)
        }
        Outcome::Fail(e) => {
            rec.record(ev("fail", json!({ "error": e })));
            *avoid = Instant::now() + AVOID_FOR;
            Done::Failed
        }
        Outcome::Info(e) => {
            rec.record(ev("info", json!({ "error": e })));
            *avoid = Instant::now() + AVOID_FOR;
            Done::Unknown
        }
    }
}

/// Subscription `k`: a WebSocket of one user on a random node, through the client proxy;
/// records every message frame of the run's chats. A connection that closes or stays silent
/// for 5 s is replaced by a new one (a new subscription id) on a random node.
pub async fn subscriber(k: usize, db: Arc<Db>, setup: Arc<Setup>, rec: Arc<Recorder>, until: Instant) {
    let session = &setup.sessions[k % setup.sessions.len()];
    let chats: std::collections::HashSet<String> = setup.chats.iter().map(|c| c.to_string()).collect();
    let process = json!(format!("sub{k}"));
    for conn in 0u32.. {
        if Instant::now() >= until {
            return;
        }
        let node = rand::thread_rng().gen_range(1..=db.opts.nodes);
        let sub = format!("d{k}.{conn}");
        let url = db.client_url(node);
        let connect = raftchat_tests::chat::Ws::connect(&url, session, true);
        let Ok(Ok(mut ws)) = tokio::time::timeout(Duration::from_secs(3), connect).await else {
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        };
        while Instant::now() < until {
            let Some(frame) = ws.next(Duration::from_secs(5)).await else { break };
            if frame["type"] != "message" {
                continue;
            }
            let Some(chat) = frame["chatId"].as_str().filter(|c| chats.contains(*c)) else { continue };
            rec.record(Ev {
                process: process.clone(),
                session: None,
                kind: "ok",
                f: "deliver",
                chat: Some(chat),
                node: Some(&crate::db::name(node)),
                value: json!({ "sub": sub, "seq": frame["seq"], "msg_id": frame["clientMsgId"],
                    "user": session.user, "entry": crate::observed::from_public(&frame) }),
            });
        }
    }
}

/// After the faults healed, before the final reads: one send to each chat, retried until it is
/// acknowledged or `wait` passes; false when some chat took no write (the cluster did not
/// recover). The sends are recorded like any other, so the checker holds them to the same rules.
pub async fn after_heal(db: &Db, setup: &Setup, rec: &Recorder, wait: Duration) -> bool {
    let Ok(client) = Client::new(setup.sessions[0].token.clone(), Duration::from_secs(3)) else { return false };
    let mut all = true;
    for (i, chat) in setup.chats.iter().enumerate() {
        let c = chat.to_string();
        let msg_id = format!("heal-{i}");
        let deadline = Instant::now() + wait;
        let mut done = false;
        for attempt in 1u64.. {
            if Instant::now() >= deadline {
                break;
            }
            let node = 1 + attempt % db.opts.nodes;
            let nname = crate::db::name(node);
            let process = json!(format!("heal{i}.{attempt}"));
            let ev = |kind: &'static str, value: Value| Ev {
                process: process.clone(),
                session: None,
                kind,
                f: "send",
                chat: Some(&c),
                node: Some(&nname),
                value,
            };
            rec.record(ev("invoke", json!({ "msg_id": msg_id, "attempt": attempt, "via": "rest" })));
            match client.send(&db.client_url(node), *chat, &msg_id).await {
                Outcome::Ok(v) => {
                    rec.record(ev("ok", v));
                    done = true;
                    break;
                }
                Outcome::Fail(e) => rec.record(ev("fail", json!({ "error": e }))),
                Outcome::Info(e) => rec.record(ev("info", json!({ "error": e }))),
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        all &= done;
    }
    all
}

/// After the faults healed: every chat's log read through the leader, then each replica's own
/// copy once it caught up (or after `wait`, as it is then). Returns false when a chat's
/// linearizable read never succeeded: the verdict can then only be unknown.
pub async fn final_reads(db: &Db, setup: &Setup, rec: &Recorder, wait: Duration) -> bool {
    let mut complete = true;
    for chat in &setup.chats {
        let c = chat.to_string();
        let deadline = Instant::now() + wait;
        let mut lin = None;
        'outer: while Instant::now() < deadline {
            for id in db.ids() {
                if let Ok(log) = crate::client::dump(&db.http, &db.url(id), *chat, "linearizable").await {
                    lin = Some(log);
                    break 'outer;
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let Some(lin) = lin else {
            complete = false;
            continue;
        };
        record_final(rec, &c, "lin", &lin);
        for id in db.ids() {
            let deadline = Instant::now() + wait;
            let mut last = None;
            let mut hosted = true;
            loop {
                match crate::client::dump(&db.http, &db.url(id), *chat, "replica").await {
                    Ok(log) if log.len() >= lin.len() => {
                        last = Some(log);
                        break;
                    }
                    Ok(log) => last = Some(log),
                    Err(crate::client::DumpError::NotHosted) => {
                        hosted = false;
                        break;
                    }
                    Err(crate::client::DumpError::Unavailable) => {}
                }
                if Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            match last {
                Some(log) => record_final(rec, &c, &crate::db::name(id), &log),
                // A replica that never answered leaves its copy unchecked: the run is unknown.
                None if hosted => {
                    eprintln!("jepsen: the final read of {c} on {} never succeeded", crate::db::name(id));
                    complete = false;
                }
                None => {}
            }
        }
    }
    complete
}

fn record_final(rec: &Recorder, chat: &str, node: &str, log: &[Value]) {
    rec.record(Ev {
        process: json!("final"),
        session: None,
        kind: "ok",
        f: "final-read",
        chat: Some(chat),
        node: Some(node),
        value: json!({ "entries": log }),
    });
}
