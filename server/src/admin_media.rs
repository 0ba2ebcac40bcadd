//! `raftchat admin media status`: blobs, bytes and copies over the whole cluster, from every
//! node's own list (`GET /internal/v1/admin/media`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use serde_json::Value;

use crate::admin::Admin;
use crate::admin_members::call;

#[derive(Debug, clap::Subcommand)]
pub enum MediaVerb {
    /// Blob counts and bytes, per node and in all, and blobs with fewer than three copies.
    Status,
}

/// Blob name -> (size, nodes holding it).
type Copies = BTreeMap<String, (u64, Vec<u64>)>;

/// Tallies every node's list; nodes that did not answer are `down`.
pub fn tally(lists: &[(u64, Option<Value>)]) -> Value {
    let mut copies: Copies = BTreeMap::new();
    let mut per_node = Vec::new();
    for (node, list) in lists {
        let Some(list) = list else {
            per_node.push(json!({ "node": node, "up": false }));
            continue;
        };
        for b in list["blobs"].as_array().into_iter().flatten() {
            let (Some(sha), Some(size)) = (b[0].as_str(), b[1].as_u64()) else { continue };
            copies.entry(sha.to_string()).or_insert((size, Vec::new())).1.push(*node);
        }
        per_node.push(json!({
            "node": node, "up": true, "blobs": list["count"], "bytes": list["bytes"],
            "incoming": list["incoming"], "truncated": list["truncated"],
        }));
    }
    let up = lists.iter().filter(|(_, l)| l.is_some()).count();
    let wanted = up.min(3);
    let under: Vec<Value> = copies
        .iter()
        .filter(|(_, (_, nodes))| nodes.len() < wanted)
        .map(|(sha, (size, nodes))| json!({ "mediaId": sha, "size": size, "nodes": nodes }))
        .collect();
    json!({
        "blobs": copies.len(),
        "bytes": copies.values().map(|(s, _)| s).sum::<u64>(),
        "storedBytes": copies.values().map(|(s, n)| s * n.len() as u64).sum::<u64>(),
        "underReplicated": under.len(),
        "underReplicatedBlobs": under.into_iter().take(100).collect::<Vec<_>>(),
        "nodes": per_node,
    })
}

pub async fn media(a: &Admin, verb: MediaVerb) -> anyhow::Result<()> {
    let MediaVerb::Status = verb;
    let http = a.client(Duration::from_secs(30))?;
    let cluster = call(http.get(format!("{}/internal/v1/cluster", a.server)), "reading the cluster").await?;
    let mut lists = Vec::new();
    for n in cluster["nodes"].as_array().into_iter().flatten() {
        let id = n["nodeId"].as_u64().unwrap_or(0);
        let addr = n["apiAddr"].as_str().unwrap_or("");
        let url = crate::admin::url_of(&a.server, addr);
        let list = call(http.get(format!("{url}/internal/v1/admin/media")), &format!("listing node {id}")).await;
        if let Err(e) = &list {
            eprintln!("node {id}: {e:#}");
        }
        lists.push((id, list.ok()));
    }
    let report = tally(&lists);
    if a.json {
        println!("{report}");
        return Ok(());
    }
    println!(
        "{} blobs, {} bytes ({} bytes stored with copies); {} with fewer than 3 copies",
        report["blobs"], report["bytes"], report["storedBytes"], report["underReplicated"]
    );
    for n in report["nodes"].as_array().into_iter().flatten() {
        if n["up"] == true {
            println!(
                "  node {}: {} blobs, {} bytes, {} transfers in progress",
                n["node"], n["blobs"], n["bytes"], n["incoming"]
            );
        } else {
            println!("  node {}: down", n["node"]);
        }
    }
    for b in report["underReplicatedBlobs"].as_array().into_iter().flatten() {
        println!(
            "  under-replicated {} ({} bytes) on nodes {}",
            b["mediaId"].as_str().unwrap_or("?"),
            b["size"],
            b["nodes"]
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn copies_are_counted_across_nodes() {
        let list =
            |blobs: Value| Some(json!({ "count": 1, "bytes": 10, "incoming": 0, "truncated": false, "blobs": blobs }));
        use serde_json::Value;
        let r = super::tally(&[
            (1, list(json!([["aa", 10], ["bb", 5]]))),
            (2, list(json!([["aa", 10]]))),
            (3, list(json!([["aa", 10], ["bb", 5]]))),
            (4, None),
        ]);
        assert_eq!(r["blobs"], 2);
        assert_eq!(r["bytes"], 15);
        assert_eq!(r["storedBytes"], 40);
        assert_eq!(r["underReplicated"], 1);
        assert_eq!(r["underReplicatedBlobs"][0]["mediaId"], "bb");
    }
}
