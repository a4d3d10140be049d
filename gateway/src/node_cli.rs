//! `sdfbs node ...` and `sdfbs repair status`: the node life cycle and the repair workers
//! through a running gateway's admin port (`admin/nodes.rs`).

use crate::cli::{NodeArgs, NodeCommand, RepairArgs, RepairCommand};
use crate::keys::{segment, Api};
use anyhow::{Context, Result};
use http::{Method, StatusCode};
use serde_json::Value;

pub async fn run_node(args: NodeArgs) -> Result<()> {
    let api = Api::new(&args.api.admin_url, args.api.admin_token.as_deref())?;
    match args.command {
        NodeCommand::List => {
            let nodes = api
                .call(Method::GET, "/cluster/nodes", None, StatusCode::OK)
                .await?
                .context("the gateway sent no node list")?;
            println!(
                "{:<38} {:<9} {:>8} {:>10} {:>10} {:>8} {:<8} ADDRESS",
                "NODE", "STATE", "HB AGE", "CAPACITY", "USED", "CHUNKS", "ZONE"
            );
            for n in nodes.as_array().map(Vec::as_slice).unwrap_or_default() {
                let mut state = n["lifecycle"].as_str().unwrap_or("?").to_string();
                if n["awaiting_audit"].as_bool() == Some(true) {
                    state.push('*');
                }
                println!(
                    "{:<38} {:<9} {:>7.1}s {:>10} {:>10} {:>8} {:<8} {}",
                    n["node_id"].as_str().unwrap_or(""),
                    state,
                    n["heartbeat_age_ms"].as_f64().unwrap_or(0.0) / 1000.0,
                    bytes(&n["capacity_bytes"]),
                    bytes(&n["used_bytes"]),
                    n["chunk_count"].as_u64().unwrap_or(0),
                    n["zone"].as_str().unwrap_or(""),
                    n["address"].as_str().unwrap_or(""),
                );
            }
        }
        NodeCommand::Drain { node } => {
            action(&api, &node, "drain").await?;
            println!("node {node} is Draining: its chunks are being copied to other nodes; `sdfbs repair status` shows how many are left, then `sdfbs node remove {node}`");
        }
        NodeCommand::Undrain { node } => {
            action(&api, &node, "undrain").await?;
            println!("node {node} is back in service");
        }
        NodeCommand::Remove { node } => {
            action(&api, &node, "remove").await?;
            println!("node {node} is Removed: it takes no chunk, and repair re-creates elsewhere any replica it still held");
        }
        NodeCommand::Events { node } => {
            let path = match &node {
                Some(n) => format!("/cluster/nodes/{}/events", segment(n)?),
                None => "/cluster/events".to_string(),
            };
            let events = api
                .call(Method::GET, &path, None, StatusCode::OK)
                .await?
                .context("the gateway sent no events")?;
            println!(
                "{:<24} {:<38} {:<9} {:<9} REASON",
                "TIME", "NODE", "FROM", "TO"
            );
            for e in events.as_array().map(Vec::as_slice).unwrap_or_default() {
                println!(
                    "{:<24} {:<38} {:<9} {:<9} {}",
                    time(e["at"].as_i64().unwrap_or(0)),
                    e["node_id"].as_str().unwrap_or(""),
                    e["from"].as_str().unwrap_or("-"),
                    e["to"].as_str().unwrap_or(""),
                    e["reason"].as_str().unwrap_or(""),
                );
            }
        }
    }
    Ok(())
}

async fn action(api: &Api, node: &str, what: &str) -> Result<Value> {
    api.call(
        Method::POST,
        &format!("/cluster/nodes/{}/{what}", segment(node)?),
        None,
        StatusCode::OK,
    )
    .await?
    .context("the gateway sent no node")
}

pub async fn run_repair(args: RepairArgs) -> Result<()> {
    let api = Api::new(&args.api.admin_url, args.api.admin_token.as_deref())?;
    match args.command {
        RepairCommand::Status => {
            let answer = api
                .call(Method::GET, "/cluster/repair", None, StatusCode::OK)
                .await?
                .context("the gateway sent no status")?;
            let s = &answer["status"];
            if s["leader"].as_bool() != Some(true) {
                println!("note: this gateway does not run the cluster workers now; ask the one that does for their progress");
            }
            println!("replication:            {}", answer["replication"]);
            println!(
                "repair passes:          {} (running: {}, last took {} ms)",
                s["repair_passes"], s["repair_running"], s["last_repair_pass_ms"]
            );
            println!(
                "under-replicated:       {} (found by the last pass)",
                s["under_replicated_last_pass"]
            );
            println!(
                "repaired:               {} chunks, {} replicas written, {} copied",
                s["chunks_repaired"],
                s["replicas_written"],
                bytes(&s["bytes_copied"])
            );
            println!("replicas dropped:       {}", s["replicas_dropped"]);
            println!("repair failures:        {}", s["repair_failures"]);
            println!("audits:                 {}", s["audits"]);
            println!(
                "garbage collected:      {} chunks, {} orphan files, {} stale uploads aborted ({} passes)",
                s["chunks_collected"], s["orphans_collected"], s["uploads_aborted"], s["gc_passes"]
            );
            if let Some(leaving) = s["evacuating"].as_object().filter(|m| !m.is_empty()) {
                for (node, left) in leaving {
                    println!("leaving node {node}: {left} chunk(s) left");
                }
            }
            let lost = answer["lost"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            if lost.is_empty() {
                println!("lost chunks:            none");
            } else {
                println!("LOST CHUNKS: {} (no replica could be read)", lost.len());
                for l in lost {
                    println!(
                        "  {} ({} bytes) on {}: {}",
                        l["chunk"].as_str().unwrap_or(""),
                        l["size"],
                        l["replicas"],
                        l["error"].as_str().unwrap_or("")
                    );
                    let objects = l["objects"]
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or_default();
                    for o in objects {
                        println!("    used by {}", o.as_str().unwrap_or(""));
                    }
                    if l["objects_scan_complete"].as_bool() != Some(true) {
                        println!("    (the search for the objects that use it has not covered every object yet)");
                    }
                }
            }
        }
    }
    Ok(())
}

fn bytes(v: &Value) -> String {
    let n = v.as_u64().unwrap_or(0) as f64;
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn time(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}
