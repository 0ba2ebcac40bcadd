//! `raftchat admin members add|remove`, `rebalance`, `drain` and `transfer-leader`: growing,
//! shrinking and evening out the cluster, and moving leadership, through the admin API
//! (server/src/http/admin_api.rs). Moves run one
//! group at a time, so a cluster under load keeps serving while it changes; a progress bar shows
//! them on a terminal, a line per move elsewhere, and a step that does not finish says what it
//! waited for. `rebalance` then evens out leadership with `transfer-leader`.

use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use serde_json::Value;

use crate::admin::Admin;

#[derive(Debug, clap::Subcommand)]
pub enum MembersVerb {
    /// Adds a started, empty node: it joins as a learner, then as a member. Follow with
    /// `rebalance` to give it replicas.
    Add {
        #[arg(long)]
        id: u64,
        /// The address other nodes reach its Raft port at.
        #[arg(long)]
        raft_addr: String,
        /// Its client address (HTTP and WebSocket).
        #[arg(long)]
        api_addr: String,
    },
    /// Moves every replica off a node, then removes it.
    Remove { id: u64 },
}

/// Calls the admin API; an error answer becomes an error with the server's message.
pub(crate) async fn call(req: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Value> {
    let r = req.send().await.with_context(|| what.to_string())?;
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let msg = v["error"]["message"].as_str().unwrap_or("").to_string();
        anyhow::bail!("{what}: {status}: {msg}");
    }
    Ok(v)
}

/// A move may wait for a new replica to copy a whole group.
const MOVE_TIMEOUT: Duration = Duration::from_secs(300);

pub async fn members(a: &Admin, verb: MembersVerb) -> anyhow::Result<()> {
    let (server, json_out, http) = (a.server.as_str(), a.json, a.client(MOVE_TIMEOUT)?);
    match verb {
        MembersVerb::Add { id, raft_addr, api_addr } => {
            let body = json!({ "id": id, "raftAddr": raft_addr, "apiAddr": api_addr });
            let req = http.post(format!("{server}/internal/v1/admin/members")).json(&body);
            let v = call(req, &format!("adding node {id}")).await?;
            if json_out {
                println!("{v}");
            } else {
                println!("node {id} is a member; run `raftchat admin rebalance` to give it replicas");
            }
            Ok(())
        }
        MembersVerb::Remove { id } => {
            preflight_all_up(&http, server, id).await?;
            run_moves(&http, server, Some(id), json_out).await?;
            let req = http.delete(format!("{server}/internal/v1/admin/members/{id}"));
            let v = call(req, &format!("removing node {id}")).await?;
            if json_out {
                println!("{v}");
            } else {
                println!("node {id} holds no replicas and left the cluster; it stops by itself (or, if it is down, when it comes back)");
            }
            Ok(())
        }
    }
}

pub async fn rebalance(a: &Admin) -> anyhow::Result<()> {
    let (server, json_out, http) = (a.server.as_str(), a.json, a.client(MOVE_TIMEOUT)?);
    run_moves(&http, server, None, json_out).await?;
    balance_leaders(&http, server, json_out).await
}

/// Leadership transfers that leave every node leading at most one group more than any other
/// (as far as each group's replicas allow): `(group, from, to)`.
pub fn plan_leaders(groups: &[(u64, Option<u64>, Vec<u64>)], nodes: &[u64]) -> Vec<(u64, u64, u64)> {
    let mut count: std::collections::BTreeMap<u64, usize> = nodes.iter().map(|n| (*n, 0)).collect();
    let mut leader: std::collections::BTreeMap<u64, u64> = std::collections::BTreeMap::new();
    for (g, l, _) in groups {
        if let Some(l) = l {
            *count.entry(*l).or_default() += 1;
            leader.insert(*g, *l);
        }
    }
    let mut out = Vec::new();
    for _ in 0..groups.len() * 2 {
        let best = groups
            .iter()
            .filter_map(|(g, _, replicas)| {
                let from = *leader.get(g)?;
                let to = replicas
                    .iter()
                    .copied()
                    .filter(|r| *r != from)
                    .min_by_key(|r| (count.get(r).copied().unwrap_or(0), *r))?;
                let gain = count[&from] as i64 - count.get(&to).copied().unwrap_or(0) as i64;
                (gain > 1).then_some((gain, *g, from, to))
            })
            .max_by_key(|(gain, g, _, _)| (*gain, std::cmp::Reverse(*g)));
        let Some((_, g, from, to)) = best else { break };
        *count.entry(from).or_default() -= 1;
        *count.entry(to).or_default() += 1;
        leader.insert(g, to);
        out.push((g, from, to));
    }
    out
}

async fn balance_leaders(http: &reqwest::Client, server: &str, json_out: bool) -> anyhow::Result<()> {
    let report = crate::admin::status(http, server).await?;
    let groups: Vec<(u64, Option<u64>, Vec<u64>)> = report["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|g| g["group"].as_u64().is_some_and(|g| g > 0))
        .map(|g| {
            let replicas = g["replicas"].as_array().into_iter().flatten().filter_map(Value::as_u64).collect();
            (g["group"].as_u64().unwrap_or(0), g["leader"].as_u64(), replicas)
        })
        .collect();
    let nodes: Vec<u64> = report["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["up"] == true)
        .filter_map(|n| n["nodeId"].as_u64())
        .collect();
    for (g, from, to) in plan_leaders(&groups, &nodes) {
        let req =
            http.post(format!("{server}/internal/v1/admin/transfer-leader")).json(&json!({ "group": g, "to": to }));
        let v = call(req, &format!("moving leadership of group {g} from node {from} to node {to}")).await?;
        if json_out {
            println!("{v}");
        } else {
            println!("group {g}: leader {from} -> {to}");
        }
    }
    Ok(())
}

/// Refuses to move replicas while another node is down: a group with replicas on the leaving
/// node and on a down node would have no quorum for its change.
async fn preflight_all_up(http: &reqwest::Client, server: &str, leaving: u64) -> anyhow::Result<()> {
    let cluster = call(http.get(format!("{server}/internal/v1/cluster")), "reading the cluster").await?;
    let short = http;
    for n in cluster["nodes"].as_array().into_iter().flatten() {
        let id = n["nodeId"].as_u64().unwrap_or(0);
        let addr = n["apiAddr"].as_str().unwrap_or("");
        let url = crate::admin::url_of(server, addr);
        let up = matches!(short.get(format!("{url}/livez")).send().await, Ok(r) if r.status().is_success());
        anyhow::ensure!(
            up || id == leaving,
            "refused: node {id} ({addr}) is down; moving replicas off node {leaving} needs every other node up, \
             or a group with replicas on both could lose its quorum. Bring node {id} back first."
        );
    }
    Ok(())
}

async fn run_moves(http: &reqwest::Client, server: &str, exclude: Option<u64>, json_out: bool) -> anyhow::Result<()> {
    let url = match exclude {
        Some(x) => format!("{server}/internal/v1/admin/plan?exclude={x}"),
        None => format!("{server}/internal/v1/admin/plan"),
    };
    let plan = call(http.get(url), "planning").await?;
    let moves = plan["moves"].as_array().cloned().unwrap_or_default();
    if moves.is_empty() {
        if !json_out {
            println!("nothing to move: replicas are already spread evenly");
        }
        return Ok(());
    }
    let bar = indicatif::ProgressBar::new(moves.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} groups moved {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let terminal = !bar.is_hidden();
    for m in &moves {
        let (g, from, to) = (&m["group"], &m["from"], &m["to"]);
        bar.set_message(format!("(group {g}: {from} -> {to})"));
        let body = json!({ "group": g, "replicas": to });
        let req = http.post(format!("{server}/internal/v1/admin/moves")).json(&body);
        let res = call(req, &format!("moving group {g} from {from} to {to}")).await;
        let v = match res {
            Ok(v) => v,
            Err(e) => {
                bar.abandon_with_message(format!("stopped at group {g}"));
                return Err(e);
            }
        };
        bar.inc(1);
        if json_out {
            println!("{v}");
        } else if !terminal {
            println!("group {g}: {from} -> {to} ({} ms)", v["tookMs"]);
        }
    }
    bar.finish_with_message("done");
    Ok(())
}

/// The client URL of node `id`, from the cluster layout.
async fn node_url(a: &Admin, id: u64) -> anyhow::Result<String> {
    let server = &a.server;
    let http = a.client(Duration::from_secs(10))?;
    let cluster = call(http.get(format!("{server}/internal/v1/cluster")), "reading the cluster").await?;
    let addr = cluster["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["nodeId"].as_u64() == Some(id))
        .and_then(|n| n["apiAddr"].as_str().map(str::to_string))
        .ok_or_else(|| anyhow::anyhow!("node {id} is not a member"))?;
    Ok(crate::admin::url_of(server, &addr))
}

pub async fn drain(a: &Admin, node: u64, on: bool) -> anyhow::Result<()> {
    let (json_out, http) = (a.json, a.client(MOVE_TIMEOUT)?);
    let url = node_url(a, node).await?;
    let req = http.post(format!("{url}/internal/v1/admin/drain")).json(&json!({ "on": on }));
    let v = call(req, &format!("draining node {node}")).await?;
    if json_out {
        println!("{v}");
    } else if on {
        println!("node {node} leads no group and will not be elected; its /readyz answers 503. Restart it, then `drain {node} --off`.");
    } else {
        println!("node {node} stands for election again");
    }
    Ok(())
}

pub async fn transfer_leader(a: &Admin, group: u32, node: u64) -> anyhow::Result<()> {
    let (server, json_out, http) = (a.server.as_str(), a.json, a.client(MOVE_TIMEOUT)?);
    let req =
        http.post(format!("{server}/internal/v1/admin/transfer-leader")).json(&json!({ "group": group, "to": node }));
    let v = call(req, &format!("moving leadership of group {group} to node {node}")).await?;
    if json_out {
        println!("{v}");
    } else {
        println!("node {node} leads group {group} ({} ms)", v["tookMs"]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::plan_leaders;

    #[test]
    fn leaders_end_spread_within_one() {
        // Five nodes, node 1 leads everything it can.
        let groups: Vec<(u64, Option<u64>, Vec<u64>)> =
            (1..=10u64).map(|g| (g, Some(1), vec![1, 2 + g % 4, 2 + (g + 1) % 4])).collect();
        let plan = plan_leaders(&groups, &[1, 2, 3, 4, 5]);
        let mut count = std::collections::BTreeMap::new();
        let mut leader: std::collections::BTreeMap<u64, u64> = groups.iter().map(|(g, _, _)| (*g, 1)).collect();
        for (g, from, to) in &plan {
            assert_eq!(leader[g], *from);
            leader.insert(*g, *to);
        }
        for l in leader.values() {
            *count.entry(*l).or_insert(0) += 1;
        }
        let (min, max) = (count.values().min().copied().unwrap_or(0), count.values().max().copied().unwrap_or(0));
        assert!(max - min <= 1 && count.len() == 5, "{count:?}");
        assert!(plan_leaders(
            &groups.iter().map(|(g, _, r)| (*g, leader.get(g).copied(), r.clone())).collect::<Vec<_>>(),
            &[1, 2, 3, 4, 5]
        )
        .is_empty());
    }
}
