//! Pairs invocations with their completions.

use std::collections::HashMap;

use serde_json::Value;

use crate::history::entries;
use crate::history::Event;
use crate::history::Kind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Surely had no effect.
    Fail,
    /// Unknown: timed out, or never completed.
    Info,
}

/// One operation: an invocation and what came of it.
#[derive(Debug, Clone)]
pub struct Op {
    /// History index of the invocation (of the completion for un-invoked events).
    pub index: u64,
    pub f: String,
    pub chat: String,
    pub session: Option<String>,
    pub node: Option<String>,
    pub invoke_time: u64,
    pub complete_time: Option<u64>,
    pub outcome: Outcome,
    /// The invocation's value.
    pub args: Value,
    /// The completion's value.
    pub value: Value,
    /// Read or final-read entries.
    pub entries: Vec<(u64, String)>,
}

impl Op {
    /// An operation begun by `e` (its invocation, or a completion that stands alone), not yet
    /// completed: `info` until a completion says otherwise.
    fn started(e: &Event) -> Op {
        Op {
            index: e.index,
            f: e.f.clone(),
            chat: e.chat.clone().unwrap_or_default(),
            session: e.session.clone(),
            node: e.node.clone(),
            invoke_time: e.time,
            complete_time: None,
            outcome: Outcome::Info,
            args: e.value.clone(),
            value: Value::Null,
            entries: Vec::new(),
        }
    }

    pub fn msg_id(&self) -> Option<&str> {
        self.args["msg_id"].as_str()
    }

    pub fn ack_seq(&self) -> Option<u64> {
        (self.outcome == Outcome::Ok).then(|| self.value["seq"].as_u64()).flatten()
    }

    /// The head a read saw: its last entry, else (nothing from `from` on) `from - 1`. Never the
    /// head the server claimed: a read is held to what it returned.
    pub fn head(&self) -> u64 {
        self.entries.last().map_or(self.read_from().saturating_sub(1), |(s, _)| *s)
    }

    pub fn read_from(&self) -> u64 {
        self.args["from"].as_u64().unwrap_or(1)
    }

    pub fn mode(&self) -> &str {
        self.args["mode"].as_str().unwrap_or("linearizable")
    }
}

/// Pairs every invoke with the next completion of the same process; completions without an
/// invoke (deliveries, final reads) stand alone; invokes never completed count as `info`.
pub fn pair(events: &[Event]) -> Vec<Op> {
    let mut open: HashMap<String, Op> = HashMap::new();
    let mut ops = Vec::new();
    for e in events {
        let process = e.process.to_string();
        let outcome = match e.kind {
            Kind::Invoke => {
                if let Some(prev) = open.insert(process, Op::started(e)) {
                    ops.push(prev);
                }
                continue;
            }
            Kind::Ok => Outcome::Ok,
            Kind::Fail => Outcome::Fail,
            Kind::Info => Outcome::Info,
        };
        let mut op = match open.remove(&process) {
            Some(op) if op.f == e.f => op,
            other => {
                if let Some(o) = other {
                    open.insert(process.clone(), o);
                }
                Op::started(e)
            }
        };
        op.complete_time = Some(e.time);
        op.outcome = outcome;
        op.value = e.value.clone();
        op.entries = entries(&e.value);
        if op.node.is_none() {
            op.node = e.node.clone();
        }
        ops.push(op);
    }
    ops.extend(open.into_values());
    ops
}
