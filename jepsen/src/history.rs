//! The history format: one JSON object per line.
//!
//! ```text
//! {"index":0,"time":12,"process":3,"session":"s3","type":"invoke","f":"send","chat":"c1","value":{"msg_id":"p3-1","attempt":1}}
//! {"index":1,"time":40,"process":3,"session":"s3","type":"ok","f":"send","chat":"c1","value":{"seq":7}}
//! {"index":2,"time":50,"process":4,"type":"invoke","f":"read","chat":"c1","value":{"from":1,"mode":"linearizable"}}
//! {"index":3,"time":60,"process":4,"type":"ok","f":"read","chat":"c1","value":{"head":7,"entries":[[1,"p0-0"],...]}}
//! {"index":9,"time":90,"process":9,"type":"ok","f":"deliver","chat":"c1","value":{"sub":"d1","seq":7,"msg_id":"p3-1"}}
//! {"index":99,"time":900,"process":0,"type":"ok","f":"final-read","chat":"c1","node":"n1","value":{"entries":[[1,"p0-0"],...]}}
//! ```
//!
//! An `ok`, `fail` or `info` completes the latest `invoke` of the same process. `fail` means the
//! operation surely had no effect; `info` means its outcome is unknown (a timeout).

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Invoke,
    Ok,
    Fail,
    Info,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    #[serde(default)]
    pub index: u64,
    pub time: u64,
    pub process: Value,
    #[serde(default)]
    pub session: Option<String>,
    #[serde(rename = "type")]
    pub kind: Kind,
    pub f: String,
    #[serde(default)]
    pub chat: Option<String>,
    #[serde(default)]
    pub node: Option<String>,
    #[serde(default)]
    pub value: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("line {line}: {source}")]
    Parse { line: usize, source: serde_json::Error },
}

/// Parses a JSON-lines history; blank lines are skipped.
pub fn parse(text: &str) -> Result<Vec<Event>, HistoryError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| HistoryError::Parse { line: i + 1, source: e }))
        .collect()
}

/// Entries of a read: `[[seq, msg_id], ...]`.
pub fn entries(v: &Value) -> Vec<(u64, String)> {
    v["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Some((e.get(0)?.as_u64()?, e.get(1)?.as_str()?.to_string())))
        .collect()
}
