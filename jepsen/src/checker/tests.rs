use serde_json::json;
use serde_json::Value;

use super::*;
use crate::history::Event;
use crate::history::Kind;

#[derive(Default)]
struct H {
    events: Vec<Event>,
    t: u64,
}

impl H {
    fn ev(&mut self, p: u64, kind: Kind, f: &str, chat: &str, session: Option<&str>, value: Value) -> &mut Self {
        self.t += 10;
        let index = self.events.len() as u64;
        self.events.push(Event {
            index,
            time: self.t,
            process: json!(p),
            session: session.map(String::from),
            kind,
            f: f.into(),
            chat: Some(chat.into()),
            node: None,
            value,
        });
        self
    }
    fn send(&mut self, p: u64, msg: &str, seq: u64) -> &mut Self {
        self.ev(p, Kind::Invoke, "send", "c", Some("s"), json!({ "msg_id": msg, "attempt": 1 }));
        self.ev(p, Kind::Ok, "send", "c", Some("s"), json!({ "seq": seq }))
    }
    fn send_outcome(&mut self, p: u64, msg: &str, kind: Kind) -> &mut Self {
        self.ev(p, Kind::Invoke, "send", "c", Some("s"), json!({ "msg_id": msg, "attempt": 1 }));
        self.ev(p, kind, "send", "c", Some("s"), json!({}))
    }
    fn read(&mut self, p: u64, mode: &str, session: &str, entries: &[(u64, &str)]) -> &mut Self {
        let head = entries.last().map_or(0, |(s, _)| *s);
        self.ev(p, Kind::Invoke, "read", "c", Some(session), json!({ "from": 1, "mode": mode }));
        self.ev(p, Kind::Ok, "read", "c", Some(session), json!({ "head": head, "entries": entries }))
    }
    fn final_read(&mut self, entries: &[(u64, &str)]) -> &mut Self {
        self.ev(999, Kind::Ok, "final-read", "c", None, json!({ "entries": entries }))
    }
    fn replica_read(&mut self, node: &str, entries: &[(u64, &str)]) -> &mut Self {
        self.final_read(entries);
        if let Some(e) = self.events.last_mut() {
            e.node = Some(node.into());
        }
        self
    }
    fn deliver(&mut self, sub: &str, seq: u64, msg: &str) -> &mut Self {
        self.ev(500, Kind::Ok, "deliver", "c", None, json!({ "sub": sub, "seq": seq, "msg_id": msg }))
    }
    /// A read whose entries carry the whole message: `(seq, msg_id, message_id, sender, body)`.
    fn read_full(&mut self, p: u64, entries: &[(u64, &str, &str, &str, &str)]) -> &mut Self {
        let e: Vec<Value> = entries.iter().map(|(s, m, id, from, body)| json!([s, m, id, from, 1000, body])).collect();
        let head = entries.last().map_or(0, |e| e.0);
        self.ev(p, Kind::Invoke, "read", "c", Some("r"), json!({ "from": 1, "mode": "linearizable" }));
        self.ev(p, Kind::Ok, "read", "c", Some("r"), json!({ "head": head, "entries": e }))
    }
    fn kinds(&self) -> Vec<&'static str> {
        let r = check(&self.events);
        let mut k: Vec<&'static str> = r.anomalies.iter().map(|a| a.kind).collect();
        k.sort_unstable();
        k.dedup();
        k
    }
}

#[test]
fn a_correct_history_is_valid_and_counts_add_up() {
    let mut h = H::default();
    h.send(1, "a", 1).send(2, "b", 2).send_outcome(3, "c", Kind::Info).send_outcome(4, "d", Kind::Info);
    h.send_outcome(5, "e", Kind::Fail).read(6, "linearizable", "r", &[(1, "a"), (2, "b"), (3, "c")]);
    h.deliver("d1", 1, "a").deliver("d1", 2, "b").final_read(&[(1, "a"), (2, "b"), (3, "c")]);
    let r = check(&h.events);
    assert_eq!(r.verdict, Verdict::Valid, "{:?}", r.anomalies);
    assert_eq!(r.counts, Counts { attempted: 5, acked: 2, recovered: 1, lost: 0, unknown: 1 });
}

#[test]
fn consistent_identities_and_server_claims_pass() {
    let mut h = H::default();
    h.send(1, "a", 1).read_full(2, &[(1, "a", "id-1", "u1", "body of a")]);
    h.read_full(3, &[(1, "a", "id-1", "u1", "body of a")]).final_read(&[(1, "a")]);
    // The ack names the same message id; a claimed head beyond the entries is not believed.
    h.events[1].value = json!({ "seq": 1, "message_id": "id-1" });
    h.events[3].value["head"] = json!(7);
    let r = check(&h.events);
    assert_eq!(r.verdict, Verdict::Valid, "{:?}", r.anomalies);
    h.events[1].value = json!({ "seq": 1, "message_id": "id-9" });
    assert!(check(&h.events).anomalies.iter().any(|a| a.kind == "identity"));
}

#[test]
fn a_reconnect_may_resume_lower_but_not_higher() {
    let mut h = H::default();
    h.send(1, "a", 1).send(1, "b", 2).send(1, "c", 3);
    // d1.1 repeats b (its watermark lagged); d2 never reconnected; d1.2 resumes right after.
    h.deliver("d1.0", 1, "a").deliver("d1.0", 2, "b").deliver("d1.1", 2, "b").deliver("d2.0", 1, "a");
    h.deliver("d1.2", 3, "c").final_read(&[(1, "a"), (2, "b"), (3, "c")]);
    let r = check(&h.events);
    assert_eq!(r.verdict, Verdict::Valid, "{:?}", r.anomalies);
}

#[test]
fn a_reconnect_may_skip_only_the_subscribers_own_messages() {
    let build = |own_sender: &str| {
        let mut h = H::default();
        h.send(1, "a", 1).send(1, "b", 2).send(1, "c", 3);
        h.deliver("d1.0", 1, "a").deliver("d1.1", 3, "c").final_read(&[]);
        for e in h.events.iter_mut().filter(|e| e.f == "deliver") {
            e.value["user"] = json!("u1");
        }
        let last = h.events.len() - 1;
        h.events[last].value = json!({ "entries": [
            [1, "a", "i1", "u2", 1, "body of a"],
            [2, "b", "i2", own_sender, 2, "body of b"],
            [3, "c", "i3", "u2", 3, "body of c"],
        ] });
        check(&h.events)
    };
    // Seq 2 is u1's own message: its watermark passed it (read implies delivered).
    assert_eq!(build("u1").verdict, Verdict::Valid, "{:?}", build("u1").anomalies);
    assert!(build("u3").anomalies.iter().any(|a| a.kind == "subscription-gap"));
}

#[test]
fn without_a_final_read_the_verdict_is_unknown() {
    let mut h = H::default();
    h.send(1, "a", 1);
    assert_eq!(check(&h.events).verdict, Verdict::Unknown);
}

#[test]
fn each_anomaly_is_named() {
    let cases: Vec<(&str, H)> = vec![
        ("lost", {
            let mut h = H::default();
            h.send(1, "a", 1).send(1, "b", 2).final_read(&[(1, "a")]);
            h
        }),
        ("lost-on-node", {
            let mut h = H::default();
            h.send(1, "a", 1).send(1, "b", 2).final_read(&[(1, "a"), (2, "b")]).replica_read("n2", &[(1, "a")]);
            h
        }),
        ("duplicate", {
            let mut h = H::default();
            h.send(1, "a", 1).final_read(&[(1, "a"), (2, "a")]);
            h
        }),
        ("inconsistent-seq", {
            let mut h = H::default();
            h.send(1, "a", 1).send(2, "b", 1).final_read(&[(1, "a"), (2, "b")]);
            h
        }),
        ("wrong-seq", {
            let mut h = H::default();
            h.send(1, "a", 2).send_outcome(2, "b", Kind::Info).final_read(&[(1, "a"), (2, "b")]);
            h
        }),
        ("phantom", {
            let mut h = H::default();
            h.send(1, "a", 1).final_read(&[(1, "a"), (2, "zz")]);
            h
        }),
        ("aborted-read", {
            let mut h = H::default();
            h.send(1, "a", 1).send_outcome(2, "b", Kind::Fail).final_read(&[(1, "a"), (2, "b")]);
            h
        }),
        ("gap", {
            let mut h = H::default();
            h.send(1, "a", 1).send(1, "b", 3).final_read(&[(1, "a"), (3, "b")]);
            h
        }),
        ("non-prefix", {
            let mut h = H::default();
            h.send(1, "a", 1).send_outcome(2, "b", Kind::Info).send_outcome(3, "x", Kind::Info);
            h.final_read(&[(1, "a"), (2, "b")]).final_read(&[(1, "a"), (2, "x"), (3, "b")]);
            h
        }),
        ("realtime-order", {
            let mut h = H::default();
            h.send(1, "a", 2).send(2, "b", 1).final_read(&[(1, "b"), (2, "a")]);
            h
        }),
        ("stale-read", {
            let mut h = H::default();
            h.send(1, "a", 1).read(2, "linearizable", "r", &[]).final_read(&[(1, "a")]);
            h
        }),
        ("read-regress", {
            let mut h = H::default();
            h.send(1, "a", 1).send(1, "b", 2);
            h.read(2, "linearizable", "r1", &[(1, "a"), (2, "b")]).read(3, "linearizable", "r2", &[(1, "a")]);
            h.final_read(&[(1, "a"), (2, "b")]);
            h
        }),
        ("future-read", {
            let mut h = H::default();
            h.read(2, "local", "r", &[(1, "a")]).send(1, "a", 1).final_read(&[(1, "a")]);
            h.events[1].value = json!({ "head": 1, "entries": [[1, "a"]] });
            // The read claims linearizable: it saw a message sent after it returned.
            h.events[0].value = json!({ "from": 1, "mode": "linearizable" });
            h
        }),
        ("monotonic-reads", {
            let mut h = H::default();
            h.send(1, "a", 1).send(1, "b", 2);
            h.read(2, "local", "sess", &[(1, "a"), (2, "b")]).read(2, "local", "sess", &[(1, "a")]);
            h.final_read(&[(1, "a"), (2, "b")]);
            h
        }),
        ("read-your-writes", {
            let mut h = H::default();
            h.send(1, "a", 1).read(1, "local", "s", &[]).final_read(&[(1, "a")]);
            h
        }),
        ("subscription-order", {
            let mut h = H::default();
            h.send(1, "a", 1).send(1, "b", 2).send(1, "c", 3).deliver("d", 1, "a").deliver("d", 3, "c");
            h.final_read(&[(1, "a"), (2, "b"), (3, "c")]);
            h
        }),
        ("subscription-gap", {
            // The next connection of subscriber d1 starts past where the previous one stopped.
            let mut h = H::default();
            h.send(1, "a", 1).send(1, "b", 2).send(1, "c", 3).send(1, "d", 4);
            h.deliver("d1.0", 1, "a").deliver("d1.0", 2, "b").deliver("d1.1", 4, "d");
            h.final_read(&[(1, "a"), (2, "b"), (3, "c"), (4, "d")]);
            h
        }),
        ("lost", {
            // Never acknowledged, but a read saw it: it was committed and must stay.
            let mut h = H::default();
            h.send(1, "a", 1).send_outcome(2, "b", Kind::Info).read(3, "local", "x", &[(1, "a"), (2, "b")]);
            h.final_read(&[(1, "a")]);
            h
        }),
        ("lost", {
            // Only a subscription saw it.
            let mut h = H::default();
            h.send(1, "a", 1).send_outcome(2, "b", Kind::Info).deliver("d", 2, "b").final_read(&[(1, "a")]);
            h
        }),
        ("stale-read", {
            // The linearizable final read is held to the acks before it, like any read: here its
            // log ends early although every message in it is where it was acknowledged.
            let mut h = H::default();
            h.send(1, "a", 1).send(1, "b", 2).final_read(&[(1, "a")]);
            h
        }),
        ("identity", {
            let mut h = H::default();
            h.send(1, "a", 1).read_full(2, &[(1, "a", "id-1", "u1", "body of a")]);
            h.read_full(3, &[(1, "a", "id-2", "u1", "body of a")]).final_read(&[(1, "a")]);
            h
        }),
        ("identity", {
            let mut h = H::default();
            h.send(1, "a", 1).read_full(2, &[(1, "a", "id-1", "u1", "body of a")]);
            h.read_full(3, &[(1, "a", "id-1", "u2", "body of a")]).final_read(&[(1, "a")]);
            h
        }),
        ("corrupt-body", {
            let mut h = H::default();
            h.send(1, "a", 1).read_full(2, &[(1, "a", "id-1", "u1", "body of b")]).final_read(&[(1, "a")]);
            h
        }),
    ];
    for (expected, h) in cases {
        let r = check(&h.events);
        assert_eq!(r.verdict, Verdict::Invalid, "{expected}: {:?}", r.anomalies);
        assert!(h.kinds().contains(&expected), "{expected}: got {:?}", h.kinds());
    }
}

/// Changes a final log.
type Mutation = Box<dyn Fn(&mut Vec<(u64, String)>)>;

/// A correct history from a tiny model: sequential sends, reads of the whole log, a final read.
fn model(n: u64, seed: u64) -> H {
    let mut h = H::default();
    let mut x = seed;
    let mut log: Vec<(u64, String)> = Vec::new();
    for i in 0..n {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        if x >> 62 == 0 {
            let entries: Vec<(u64, &str)> = log.iter().map(|(s, m)| (*s, m.as_str())).collect();
            h.read(2, "linearizable", "r", &entries);
        } else {
            let m = format!("m{i}");
            h.send(1, &m, log.len() as u64 + 1);
            log.push((log.len() as u64 + 1, m));
        }
    }
    let entries: Vec<(u64, &str)> = log.iter().map(|(s, m)| (*s, m.as_str())).collect();
    h.final_read(&entries);
    h
}

#[test]
fn models_pass_and_every_mutation_fails() {
    for seed in 0..20 {
        let h = model(40, seed);
        assert_eq!(check(&h.events).verdict, Verdict::Valid, "seed {seed}");
        let last = h.events.len() - 1;
        let fin = crate::history::entries(&h.events[last].value);
        if fin.len() < 3 {
            continue;
        }
        let mutations: Vec<Mutation> = vec![
            Box::new(|e| {
                e.remove(1);
            }),
            Box::new(|e| {
                let d = e[0].1.clone();
                e.push((e.len() as u64 + 1, d));
            }),
            Box::new(|e| {
                let (a, b) = (e[0].1.clone(), e[1].1.clone());
                e[0].1 = b;
                e[1].1 = a;
            }),
            Box::new(|e| e[2].0 += 5),
        ];
        for (k, mutate) in mutations.iter().enumerate() {
            let mut m = h.events.clone();
            let mut entries = fin.clone();
            mutate(&mut entries);
            m[last].value = json!({ "entries": entries });
            assert_eq!(check(&m).verdict, Verdict::Invalid, "seed {seed} mutation {k}");
        }
        // Moving an ack earlier than the invoke of a message acked before it breaks real time.
        let mut m = h.events.clone();
        if let Some(i) = m.iter().position(|e| e.kind == Kind::Ok && e.f == "send" && e.value["seq"] == 2) {
            m[i].value = json!({ "seq": 1 });
            assert_eq!(check(&m).verdict, Verdict::Invalid, "seed {seed} moved ack");
        }
    }
}
