//! The checker: the properties of reliability.md §2 over a history of a per-chat append-only log.
//!
//! The server reveals the total order (seq), so no search is needed: per chat, sort by seq and
//! time, keep running maxima for the real-time checks, and use maps for the rest. A history
//! without a final read of a chat that had acknowledged sends is `unknown`, never `valid`.

mod ops;
mod subscriptions;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::collections::HashSet;

use serde::Serialize;
use serde_json::Value;

use crate::history::Event;
pub use ops::pair;
pub use ops::Op;
pub use ops::Outcome;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Anomaly {
    pub kind: &'static str,
    pub chat: String,
    pub detail: String,
    /// History indexes of the operations involved.
    pub ops: Vec<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Valid,
    Invalid,
    Unknown,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub attempted: usize,
    pub acked: usize,
    /// Sends with an unknown outcome that turned up in the final read.
    pub recovered: usize,
    pub lost: usize,
    /// Sends with an unknown outcome that did not turn up.
    pub unknown: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub verdict: Verdict,
    pub counts: Counts,
    pub anomalies: Vec<Anomaly>,
    /// Chats with acknowledged sends but no final read.
    pub unchecked_chats: Vec<String>,
}

/// Checks a history.
pub fn check(events: &[Event]) -> Report {
    let ops = ops::pair(events);
    let mut by_chat: BTreeMap<String, Vec<&Op>> = BTreeMap::new();
    for op in &ops {
        by_chat.entry(op.chat.clone()).or_default().push(op);
    }
    let mut anomalies = Vec::new();
    let mut counts = Counts::default();
    let mut unchecked = Vec::new();
    for (chat, ops) in &by_chat {
        check_chat(chat, ops, &mut anomalies, &mut counts, &mut unchecked);
    }
    let verdict = if !anomalies.is_empty() {
        Verdict::Invalid
    } else if !unchecked.is_empty() {
        Verdict::Unknown
    } else {
        Verdict::Valid
    };
    Report { verdict, counts, anomalies, unchecked_chats: unchecked }
}

fn anomaly(out: &mut Vec<Anomaly>, kind: &'static str, chat: &str, detail: String, ops: Vec<u64>) {
    out.push(Anomaly { kind, chat: chat.to_string(), detail, ops });
}

fn check_chat(chat: &str, ops: &[&Op], out: &mut Vec<Anomaly>, counts: &mut Counts, unchecked: &mut Vec<String>) {
    let sends: Vec<&Op> = ops.iter().copied().filter(|o| o.f == "send").collect();
    let reads: Vec<&Op> = ops.iter().copied().filter(|o| o.f == "read" && o.outcome == Outcome::Ok).collect();
    let finals: Vec<&Op> = ops.iter().copied().filter(|o| o.f == "final-read" && o.outcome == Outcome::Ok).collect();
    let delivers: Vec<&Op> = ops.iter().copied().filter(|o| o.f == "deliver" && o.outcome == Outcome::Ok).collect();

    // What was sent: per msg_id, its attempts.
    let mut attempts: HashMap<&str, Vec<&Op>> = HashMap::new();
    for s in &sends {
        if let Some(m) = s.msg_id() {
            attempts.entry(m).or_default().push(s);
        }
    }
    let acked: HashMap<&str, Vec<&Op>> = attempts
        .iter()
        .filter_map(|(m, a)| {
            let ok: Vec<&Op> = a.iter().copied().filter(|o| o.outcome == Outcome::Ok).collect();
            (!ok.is_empty()).then_some((*m, ok))
        })
        .collect();
    counts.attempted += attempts.len();
    counts.acked += acked.len();

    // 1, 2: one seq, one msg_id; one msg_id, one seq. From acks, reads and finals.
    let mut at: BTreeMap<u64, HashSet<&str>> = BTreeMap::new();
    let mut seq_of: HashMap<&str, HashSet<u64>> = HashMap::new();
    for (m, oks) in &acked {
        for o in oks {
            if let Some(s) = o.ack_seq() {
                at.entry(s).or_default().insert(m);
                seq_of.entry(m).or_default().insert(s);
            }
        }
    }
    for r in reads.iter().chain(finals.iter()) {
        let mut seen_here: HashMap<&str, u64> = HashMap::new();
        for (s, m) in &r.entries {
            at.entry(*s).or_default().insert(m.as_str());
            seq_of.entry(m.as_str()).or_default().insert(*s);
            if let Some(prev) = seen_here.insert(m.as_str(), *s) {
                anomaly(out, "duplicate", chat, format!("{m} at seqs {prev} and {s} in one read"), vec![r.index]);
            }
        }
    }
    for (s, ms) in &at {
        if ms.len() > 1 {
            let mut v: Vec<&str> = ms.iter().copied().collect();
            v.sort_unstable();
            anomaly(out, "inconsistent-seq", chat, format!("seq {s} holds {v:?}"), vec![]);
        }
    }
    for (m, ss) in &seq_of {
        if ss.len() > 1 {
            let mut v: Vec<u64> = ss.iter().copied().collect();
            v.sort_unstable();
            anomaly(out, "duplicate", chat, format!("{m} at seqs {v:?}"), vec![]);
        }
    }

    // 5: phantom and aborted reads.
    for r in reads.iter().chain(finals.iter()) {
        for (s, m) in &r.entries {
            match attempts.get(m.as_str()) {
                None => anomaly(out, "phantom", chat, format!("{m} at seq {s} was never sent"), vec![r.index]),
                Some(a) if a.iter().all(|o| o.outcome == Outcome::Fail) => anomaly(
                    out,
                    "aborted-read",
                    chat,
                    format!("{m} at seq {s} failed definitely yet was read"),
                    vec![r.index],
                ),
                _ => {}
            }
        }
    }

    // 6: gaps in reads.
    for r in &reads {
        let from = r.read_from();
        for (i, (s, _)) in r.entries.iter().enumerate() {
            if *s != from + i as u64 {
                anomaly(out, "gap", chat, format!("read from {from} has seq {s} at position {i}"), vec![r.index]);
                break;
            }
        }
    }

    // The final log: the longest final read; the others must be its prefixes (7).
    let final_log: Option<&Op> = finals.iter().copied().max_by_key(|f| f.entries.len());
    if let Some(fl) = final_log {
        for f in &finals {
            let prefix = f.entries.iter().zip(fl.entries.iter()).all(|(a, b)| a == b);
            if !prefix {
                anomaly(
                    out,
                    "non-prefix",
                    chat,
                    format!("final read on {:?} diverges", f.node),
                    vec![f.index, fl.index],
                );
            }
        }
        for (i, (s, _)) in fl.entries.iter().enumerate() {
            if *s != i as u64 + 1 {
                anomaly(out, "gap", chat, format!("final log has seq {s} at position {}", i + 1), vec![fl.index]);
                break;
            }
        }
        let final_pos: HashMap<&str, u64> = fl.entries.iter().map(|(s, m)| (m.as_str(), *s)).collect();
        // 3 (per replica): after heal every replica's own copy holds every acknowledged message.
        for f in finals.iter().filter(|f| f.node.as_deref().is_some_and(|n| n != "lin")) {
            let here: HashSet<&str> = f.entries.iter().map(|(_, m)| m.as_str()).collect();
            let mut missing: Vec<&str> = acked.keys().copied().filter(|m| !here.contains(m)).collect();
            if !missing.is_empty() {
                missing.sort_unstable();
                anomaly(
                    out,
                    "lost-on-node",
                    chat,
                    format!(
                        "{:?} lacks {} acknowledged messages, e.g. {:?}",
                        f.node,
                        missing.len(),
                        &missing[..missing.len().min(5)]
                    ),
                    vec![f.index],
                );
            }
        }
        // 3, 4: lost and wrong-seq.
        for (m, oks) in &acked {
            match final_pos.get(m) {
                None => {
                    counts.lost += 1;
                    anomaly(
                        out,
                        "lost",
                        chat,
                        format!("acknowledged {m} is missing"),
                        oks.iter().map(|o| o.index).collect(),
                    );
                }
                Some(fs) => {
                    for o in oks {
                        if o.ack_seq().is_some_and(|s| s != *fs) {
                            anomaly(
                                out,
                                "wrong-seq",
                                chat,
                                format!("{m} acked at {:?}, final at {fs}", o.ack_seq()),
                                vec![o.index],
                            );
                        }
                    }
                }
            }
        }
        // 3 (observed): a message any read or subscription saw was committed: it must stay.
        let mut observed: BTreeMap<&str, u64> = BTreeMap::new();
        for r in &reads {
            for (_, m) in &r.entries {
                observed.entry(m.as_str()).or_insert(r.index);
            }
        }
        for d in &delivers {
            if let Some(m) = d.value["msg_id"].as_str() {
                observed.entry(m).or_insert(d.index);
            }
        }
        for (m, at) in observed {
            if !final_pos.contains_key(m) && !acked.contains_key(m) {
                counts.lost += 1;
                anomaly(out, "lost", chat, format!("{m}, observed by a client, is missing"), vec![at]);
            }
        }
        for (m, a) in &attempts {
            if !acked.contains_key(m) && a.iter().any(|o| o.outcome == Outcome::Info) {
                if final_pos.contains_key(m) {
                    counts.recovered += 1;
                } else {
                    counts.unknown += 1;
                }
            }
        }
        realtime(chat, &sends, &final_pos, out);
        // Who sent the message at each seq (entries that record it).
        let sender_at: HashMap<u64, &str> = fl.value["entries"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| Some((e.get(0)?.as_u64()?, e.get(3)?.as_str()?)))
            .collect();
        subscriptions::check(chat, &delivers, &final_pos, &sender_at, out);
    } else if !acked.is_empty() {
        unchecked.push(chat.to_string());
    }
    // The linearizable final read is a linearizable read like the others (9, 10).
    let lin_finals = finals.iter().copied().filter(|f| f.node.as_deref().is_none_or(|n| n == "lin"));
    let timed: Vec<&Op> = reads.iter().copied().chain(lin_finals).collect();
    reads_in_time(chat, &sends, &timed, &attempts, out);
    identities(chat, ops, out);
}

/// 12: one message, one identity: every observation of a clientMsgId (acks, reads, final reads,
/// deliveries) names the same message id, sender and timestamp, and the body is the one sent.
fn identities(chat: &str, ops: &[&Op], out: &mut Vec<Anomaly>) {
    // Per clientMsgId: [message id, sender, timestamp] as first seen, each with where from.
    let mut first: HashMap<String, [(Value, u64); 3]> = HashMap::new();
    let mut note = |m: &str, id: [Value; 3], at: u64, out: &mut Vec<Anomaly>| {
        let seen = first.entry(m.to_string()).or_default();
        for (i, v) in id.into_iter().enumerate() {
            // A field an observation lacks (an ack names no sender) is not compared.
            if v.is_null() {
                continue;
            }
            if seen[i].0.is_null() {
                seen[i] = (v, at);
            } else if seen[i].0 != v {
                let what = ["message id", "sender", "timestamp"][i];
                anomaly(out, "identity", chat, format!("{m}: {what} {} and {v}", seen[i].0), vec![seen[i].1, at]);
            }
        }
    };
    for o in ops.iter().filter(|o| o.outcome == Outcome::Ok) {
        let mut entries: Vec<&Value> = Vec::new();
        match o.f.as_str() {
            "send" => {
                if let Some(m) = o.msg_id() {
                    note(m, [o.value["message_id"].clone(), Value::Null, Value::Null], o.index, out);
                }
            }
            "read" | "final-read" => entries.extend(o.value["entries"].as_array().into_iter().flatten()),
            "deliver" => entries.extend(o.value.get("entry")),
            _ => {}
        }
        for e in entries {
            // `[seq, clientMsgId, messageId, sender, timestamp ms, body]`; older histories
            // record `[seq, clientMsgId]` only.
            let (Some(m), Some(arr)) = (e[1].as_str(), e.as_array()) else { continue };
            if arr.len() < 6 {
                continue;
            }
            if e[5].as_str() != Some(format!("body of {m}").as_str()) {
                anomaly(out, "corrupt-body", chat, format!("{m} has body {}", e[5]), vec![o.index]);
            }
            note(m, [e[2].clone(), e[3].clone(), e[4].clone()], o.index, out);
        }
    }
}

/// 8: a send acknowledged before another is invoked sits before it.
fn realtime(chat: &str, sends: &[&Op], final_pos: &HashMap<&str, u64>, out: &mut Vec<Anomaly>) {
    // (time, is_completion, op): completions at equal times come after invokes (strict "before").
    let mut timeline: Vec<(u64, bool, &Op)> = Vec::new();
    for s in sends {
        timeline.push((s.invoke_time, false, s));
        if s.outcome == Outcome::Ok {
            timeline.push((s.complete_time.unwrap_or(u64::MAX), true, s));
        }
    }
    timeline.sort_by_key(|(t, c, o)| (*t, *c, o.index));
    let mut max_done: Option<(u64, u64)> = None;
    let mut floor_at_invoke: HashMap<u64, Option<(u64, u64)>> = HashMap::new();
    for (_, is_completion, op) in timeline {
        if is_completion {
            if let Some(s) = op.msg_id().and_then(|m| final_pos.get(m).copied()).or(op.ack_seq()) {
                if max_done.is_none_or(|(ms, _)| s > ms) {
                    max_done = Some((s, op.index));
                }
            }
        } else {
            floor_at_invoke.insert(op.index, max_done);
        }
    }
    // A message's place is decided by its first attempt that may have had an effect; retries and
    // re-sends of it return that place, however late they were invoked.
    let mut first: HashMap<&str, &Op> = HashMap::new();
    for s in sends.iter().filter(|s| s.outcome != Outcome::Fail) {
        if let Some(m) = s.msg_id() {
            let e = first.entry(m).or_insert(s);
            if s.invoke_time < e.invoke_time {
                *e = s;
            }
        }
    }
    for (m, s) in first {
        let Some(pos) = final_pos.get(m).copied() else { continue };
        if let Some(Some((floor, by))) = floor_at_invoke.get(&s.index) {
            if pos <= *floor {
                anomaly(
                    out,
                    "realtime-order",
                    chat,
                    format!("{m} at seq {pos} though seq {floor} was acked before it was sent"),
                    vec![*by, s.index],
                );
            }
        }
    }
}

/// 9, 10: linearizable reads see every earlier ack and never go back; sessions read monotonically
/// and see their own writes.
fn reads_in_time(chat: &str, sends: &[&Op], reads: &[&Op], attempts: &HashMap<&str, Vec<&Op>>, out: &mut Vec<Anomaly>) {
    for r in reads {
        let (Some(done), head) = (r.complete_time, r.head()) else { continue };
        if r.mode() == "linearizable" {
            for s in sends.iter().filter(|s| s.outcome == Outcome::Ok) {
                if s.complete_time.is_some_and(|t| t < r.invoke_time) && s.ack_seq().is_some_and(|q| q > head) {
                    anomaly(
                        out,
                        "stale-read",
                        chat,
                        format!("read head {head} misses seq {:?} acked before it", s.ack_seq()),
                        vec![s.index, r.index],
                    );
                }
            }
            for r2 in reads.iter().filter(|x| x.mode() == "linearizable") {
                if r2.invoke_time > done && r2.head() < head {
                    anomaly(
                        out,
                        "read-regress",
                        chat,
                        format!("head {head} then {}", r2.head()),
                        vec![r.index, r2.index],
                    );
                }
            }
            for (_, m) in &r.entries {
                if let Some(a) = attempts.get(m.as_str()) {
                    if a.iter().all(|o| o.invoke_time > done) {
                        anomaly(out, "future-read", chat, format!("{m} read before it was sent"), vec![r.index]);
                    }
                }
            }
        }
        if let Some(sess) = &r.session {
            for r2 in reads.iter().filter(|x| x.session.as_ref() == Some(sess)) {
                if r2.invoke_time > done && r2.head() < head {
                    anomaly(
                        out,
                        "monotonic-reads",
                        chat,
                        format!("session {sess}: head {head} then {}", r2.head()),
                        vec![r.index, r2.index],
                    );
                }
            }
            for s in sends.iter().filter(|s| s.outcome == Outcome::Ok && s.session.as_ref() == Some(sess)) {
                if s.complete_time.is_some_and(|t| t < r.invoke_time) && s.ack_seq().is_some_and(|q| q > head) {
                    anomaly(
                        out,
                        "read-your-writes",
                        chat,
                        format!("session {sess} acked {:?} then read head {head}", s.ack_seq()),
                        vec![s.index, r.index],
                    );
                }
            }
        }
    }
}
