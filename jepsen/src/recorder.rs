//! Writes the history as it happens: one JSON line per event, indexes in order, times in
//! nanoseconds since the run began.

use std::io::BufWriter;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use serde_json::json;
use serde_json::Value;

pub struct Recorder {
    start: Instant,
    out: Mutex<(u64, BufWriter<std::fs::File>)>,
}

/// One event to record; `process` is a number for clients, a name for the nemesis and the
/// subscriptions.
pub struct Ev<'a> {
    pub process: Value,
    pub session: Option<&'a str>,
    pub kind: &'a str,
    pub f: &'a str,
    pub chat: Option<&'a str>,
    pub node: Option<&'a str>,
    pub value: Value,
}

impl Recorder {
    pub fn create(path: &Path) -> std::io::Result<Recorder> {
        let file = std::fs::File::create(path)?;
        Ok(Recorder { start: Instant::now(), out: Mutex::new((0, BufWriter::new(file))) })
    }

    /// Nanoseconds since the run began.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    pub fn record(&self, e: Ev<'_>) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let mut line = json!({
            "index": out.0,
            "time": self.now(),
            "process": e.process,
            "type": e.kind,
            "f": e.f,
            "value": e.value,
        });
        if let Some(s) = e.session {
            line["session"] = json!(s);
        }
        if let Some(c) = e.chat {
            line["chat"] = json!(c);
        }
        if let Some(n) = e.node {
            line["node"] = json!(n);
        }
        out.0 += 1;
        // A history that cannot be written makes the run's verdict unknown (checked at the end
        // by reading it back); the workload itself goes on.
        let _ = writeln!(out.1, "{line}");
    }

    /// A nemesis event: `process: "nemesis"`, `type: "info"`.
    pub fn nemesis(&self, f: &str, value: Value) {
        self.record(Ev { process: json!("nemesis"), session: None, kind: "info", f, chat: None, node: None, value });
    }

    pub fn flush(&self) -> std::io::Result<()> {
        self.out.lock().unwrap_or_else(|e| e.into_inner()).1.flush()
    }
}
