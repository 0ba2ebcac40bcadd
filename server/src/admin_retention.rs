//! `raftchat admin retention show|set|clear|sweep`: the cluster-wide history retention policy
//! (server/src/http/retention_api.rs).

use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use serde_json::Value;

use crate::admin::Admin;
use crate::admin_members::call;

#[derive(Debug, clap::Subcommand)]
pub enum RetentionVerb {
    /// The policy in force.
    Show,
    /// Sets the policy: messages older than --max-age, or beyond the newest --max-messages of a
    /// chat, are deleted by the next sweep. A limit left out is no limit.
    Set {
        /// Age like 30d, 12h, 90m or 3600s.
        #[arg(long)]
        max_age: Option<String>,
        #[arg(long)]
        max_messages: Option<u64>,
    },
    /// Keep everything again (deleted messages do not come back).
    Clear,
    /// Apply the policy now on every node, instead of waiting for the next periodic sweep.
    Sweep,
}

/// "30d" -> 2_592_000 seconds.
pub fn parse_age(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().with_context(|| format!("{s:?}: expected a number with a unit, like 30d"))?;
    let mult = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        other => anyhow::bail!("{s:?}: unknown unit {other:?} (use s, m, h, d or w)"),
    };
    let secs = n.checked_mul(mult).ok_or_else(|| anyhow::anyhow!("{s:?} is too long"))?;
    anyhow::ensure!(secs > 0, "a max age of 0 would delete every message");
    Ok(secs)
}

fn describe(v: &Value) -> String {
    let age = v["maxAgeSecs"].as_u64().map(|s| format!("messages older than {s} s are deleted"));
    let count = v["maxMessages"].as_u64().map(|n| format!("each chat keeps its newest {n} messages"));
    match (age, count) {
        (None, None) => "retention: every message is kept".into(),
        (a, c) => format!("retention: {}", a.into_iter().chain(c).collect::<Vec<_>>().join("; ")),
    }
}

pub async fn retention(a: &Admin, verb: RetentionVerb) -> anyhow::Result<()> {
    let http = a.client(Duration::from_secs(120))?;
    let url = format!("{}/internal/v1/admin/retention", a.server);
    let v = match verb {
        RetentionVerb::Show => call(http.get(&url), "reading the retention policy").await?,
        RetentionVerb::Set { max_age, max_messages } => {
            anyhow::ensure!(
                max_age.is_some() || max_messages.is_some(),
                "name --max-age or --max-messages (or use `retention clear`)"
            );
            let age = max_age.as_deref().map(parse_age).transpose()?;
            let body = json!({ "maxAgeSecs": age, "maxMessages": max_messages });
            call(http.put(&url).json(&body), "setting the retention policy").await?
        }
        RetentionVerb::Clear => call(http.put(&url).json(&json!({})), "clearing the retention policy").await?,
        RetentionVerb::Sweep => return sweep(a, &http).await,
    };
    if a.json {
        println!("{v}");
    } else {
        println!("{}", describe(&v));
    }
    Ok(())
}

async fn sweep(a: &Admin, http: &reqwest::Client) -> anyhow::Result<()> {
    let cluster = call(http.get(format!("{}/internal/v1/cluster", a.server)), "reading the cluster").await?;
    let (mut groups, mut removed) = (0u64, 0u64);
    let mut per_node = Vec::new();
    for n in cluster["nodes"].as_array().into_iter().flatten() {
        let id = n["nodeId"].as_u64().unwrap_or(0);
        let addr = n["apiAddr"].as_str().unwrap_or("");
        let url = crate::admin::url_of(&a.server, addr);
        match call(http.post(format!("{url}/internal/v1/admin/retention/sweep")), &format!("sweeping on node {id}"))
            .await
        {
            Ok(v) => {
                groups += v["groups"].as_u64().unwrap_or(0);
                removed += v["removed"].as_u64().unwrap_or(0);
                per_node.push(json!({ "node": id, "report": v }));
            }
            Err(e) => {
                // A node that is down leads nothing; its groups' new leaders sweep them.
                eprintln!("node {id}: {e:#}");
                per_node.push(json!({ "node": id, "error": format!("{e:#}") }));
            }
        }
    }
    if a.json {
        println!("{}", json!({ "groups": groups, "removed": removed, "nodes": per_node }));
    } else {
        println!("swept {groups} groups: {removed} messages deleted");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ages() {
        assert_eq!(super::parse_age("30d").unwrap(), 2_592_000);
        assert_eq!(super::parse_age("90m").unwrap(), 5400);
        assert_eq!(super::parse_age("45").unwrap(), 45);
        assert!(super::parse_age("0s").is_err());
        assert!(super::parse_age("3y").is_err());
        assert!(super::parse_age("d").is_err());
    }
}
