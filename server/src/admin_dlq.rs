//! `raftchat admin dlq list|replay`: push notifications that failed every attempt
//! (server/src/http/push_api.rs).

use std::time::Duration;

use serde_json::json;

use crate::admin::Admin;
use crate::admin_members::call;

#[derive(Debug, clap::Subcommand)]
pub enum DlqVerb {
    /// Every dead-lettered notification.
    List,
    /// Send dead-lettered notifications to the webhook again (all, or one with --id); those it
    /// takes leave the queue.
    Replay {
        #[arg(long)]
        id: Option<String>,
    },
}

pub async fn dlq(a: &Admin, verb: DlqVerb) -> anyhow::Result<()> {
    let http = a.client(Duration::from_secs(120))?;
    match verb {
        DlqVerb::List => {
            let v = call(http.get(format!("{}/internal/v1/admin/dlq", a.server)), "listing dead letters").await?;
            if a.json {
                println!("{v}");
                return Ok(());
            }
            println!("{} dead-lettered notification(s)", v["count"]);
            for n in v["notifications"].as_array().into_iter().flatten() {
                println!(
                    "  {}  user {}  {} message(s)  {} attempts  last error: {}",
                    n["id"].as_str().unwrap_or("?"),
                    n["userId"].as_str().unwrap_or("?"),
                    n["count"],
                    n["attempts"],
                    n["lastError"].as_str().unwrap_or("")
                );
            }
        }
        DlqVerb::Replay { id } => {
            let url = format!("{}/internal/v1/admin/dlq/replay", a.server);
            let v = call(http.post(url).json(&json!({ "id": id })), "replaying dead letters").await?;
            if a.json {
                println!("{v}");
            } else {
                let sent = v["sent"].as_array().map_or(0, Vec::len);
                let failed = v["failed"].as_array().map_or(0, Vec::len);
                println!("replayed: {sent} sent, {failed} failed");
                for f in v["failed"].as_array().into_iter().flatten() {
                    println!("  {}: {}", f["id"].as_str().unwrap_or("?"), f["error"].as_str().unwrap_or(""));
                }
            }
            anyhow::ensure!(v["failed"].as_array().is_none_or(Vec::is_empty), "some notifications could not be sent");
        }
    }
    Ok(())
}
