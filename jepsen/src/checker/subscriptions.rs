//! 11: what each subscription (one WebSocket connection, `d<k>.<n>`: subscriber k's n-th
//! connection) received of a chat: +1 in seq, each message where the final log has it, and a
//! subscriber's next connection resuming no later than where the previous one stopped (the
//! server resumes a device from its delivered watermark, which only counts what arrived).

use std::collections::BTreeMap;
use std::collections::HashMap;

use super::anomaly;
use super::Anomaly;
use super::Op;

/// 11: deliveries per subscription are +1 in seq and agree with the final log.
pub(super) fn check(
    chat: &str,
    delivers: &[&Op],
    final_pos: &HashMap<&str, u64>,
    sender_at: &HashMap<u64, &str>,
    out: &mut Vec<Anomaly>,
) {
    let mut last: HashMap<String, (u64, u64)> = HashMap::new();
    let mut ordered: Vec<&&Op> = delivers.iter().collect();
    ordered.sort_by_key(|o| (o.complete_time.unwrap_or(o.invoke_time), o.index));
    for d in ordered {
        let sub = d.value["sub"].as_str().unwrap_or("").to_string();
        let Some(seq) = d.value["seq"].as_u64() else { continue };
        if let Some(m) = d.value["msg_id"].as_str() {
            if final_pos.get(m).is_some_and(|p| *p != seq) {
                anomaly(
                    out,
                    "subscription-order",
                    chat,
                    format!("sub {sub} got {m} at {seq}, final has it elsewhere"),
                    vec![d.index],
                );
            }
        }
        if let Some((prev, prev_index)) = last.get(&sub) {
            if seq != prev + 1 && seq > *prev {
                anomaly(
                    out,
                    "subscription-order",
                    chat,
                    format!("sub {sub}: seq {prev} then {seq}"),
                    vec![*prev_index, d.index],
                );
            }
            if seq <= *prev {
                anomaly(
                    out,
                    "subscription-order",
                    chat,
                    format!("sub {sub}: seq {prev} then {seq} (back)"),
                    vec![*prev_index, d.index],
                );
            }
        }
        last.insert(sub, (seq, d.index));
    }
    resumes(chat, delivers, sender_at, out);
}

/// A subscriber's connections in order: each starts (in this chat) at most one past the highest
/// seq its earlier connections received, but for the subscriber's own messages: a device that
/// reconnects without `sync` resumes from its user's delivered watermark, which a receipt raises
/// past the user's own messages (read implies delivered, and the sender has read what it sent).
fn resumes(chat: &str, delivers: &[&Op], sender_at: &HashMap<u64, &str>, out: &mut Vec<Anomaly>) {
    // (subscriber, connection) -> (first seq, its op, highest seq).
    let mut span: BTreeMap<(String, u64), (u64, u64, u64)> = BTreeMap::new();
    let mut user_of: HashMap<String, &str> = HashMap::new();
    for d in delivers {
        let Some(seq) = d.value["seq"].as_u64() else { continue };
        let Some((k, n)) = d.value["sub"].as_str().and_then(|s| s.split_once('.')) else { continue };
        let Ok(n) = n.parse::<u64>() else { continue };
        let e = span.entry((k.to_string(), n)).or_insert((seq, d.index, seq));
        e.2 = e.2.max(seq);
        if let Some(u) = d.value["user"].as_str() {
            user_of.insert(k.to_string(), u);
        }
    }
    let mut reached: HashMap<String, (u64, u64)> = HashMap::new();
    for ((k, n), (first, first_op, high)) in span {
        if let Some((prev, prev_n)) = reached.get(&k) {
            let own = |s: u64| user_of.get(&k).is_some_and(|u| sender_at.get(&s) == Some(u));
            if first > prev + 1 && !(prev + 1..first).all(own) {
                anomaly(
                    out,
                    "subscription-gap",
                    chat,
                    format!("{k}.{n} resumed at seq {first} though {k}.{prev_n} had reached only {prev}"),
                    vec![first_op],
                );
            }
        }
        let best = reached.get(&k).map_or(0, |(p, _)| *p);
        if high >= best {
            reached.insert(k, (high, n));
        }
    }
}
