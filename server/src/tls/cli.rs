//! `raftchat cert`: the cluster CA and the certificates it signs, in the style of
//! `cockroach cert`. Every command works on a certificates directory (`--certs-dir`).
//!
//! - `create-ca`: `ca.crt` and `ca.key` (keep `ca.key` off the nodes: `--ca-key PATH`).
//! - `create-node --node-id N --host H...`: `node.crt` and `node.key` for node N.
//! - `create-client`: `client.crt` and `client.key` for the admin CLI.
//! - `list`: every certificate in the directory, its names and expiry.

use std::path::PathBuf;

use super::certs;
use super::certs::Ca;

#[derive(Debug, clap::Args)]
pub struct CertArgs {
    /// The certificates directory.
    #[arg(long, env = "RAFTCHAT_CERTS_DIR", default_value = "certs", global = true)]
    certs_dir: PathBuf,
    /// The CA's private key [default: CERTS_DIR/ca.key].
    #[arg(long, global = true)]
    ca_key: Option<PathBuf>,
    /// The cluster id the certificates are for (the nodes' --cluster-id).
    #[arg(long, env = "RAFTCHAT_CLUSTER_ID", default_value = "raftchat", global = true)]
    cluster_id: String,
    /// Validity in days.
    #[arg(long, global = true)]
    lifetime_days: Option<u32>,
    /// Replace existing files.
    #[arg(long, global = true)]
    overwrite: bool,
    #[command(subcommand)]
    verb: CertVerb,
}

#[derive(Debug, clap::Subcommand)]
enum CertVerb {
    /// Create the cluster CA (default 10 years).
    CreateCa,
    /// Create a node's certificate (default 1 year).
    CreateNode {
        #[arg(long)]
        node_id: u64,
        /// A host name or IP clients use to reach the node; repeatable [default: localhost,
        /// 127.0.0.1, ::1].
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
    /// Create an administrator's client certificate for `raftchat admin` (default 1 year).
    CreateClient,
    /// List the certificates in the directory.
    List,
}

pub fn cert_main(args: CertArgs) -> anyhow::Result<()> {
    let dir = &args.certs_dir;
    let ca_key = args.ca_key.clone().unwrap_or_else(|| dir.join(super::CA_KEY));
    let ca_cert = dir.join(super::CA_CERT);
    match args.verb {
        CertVerb::CreateCa => {
            let ca = certs::create_ca(&args.cluster_id, args.lifetime_days.unwrap_or(3650))?;
            certs::write(&ca_key, &ca.key_pem, true, args.overwrite)?;
            certs::write(&ca_cert, &ca.cert_pem, false, args.overwrite)?;
            println!("wrote {} and {}", ca_cert.display(), ca_key.display());
        }
        CertVerb::CreateNode { node_id, hosts } => {
            let hosts = if hosts.is_empty() { default_hosts() } else { hosts };
            let ca = Ca::load(&ca_cert, &ca_key)?;
            let issued = ca.node(&args.cluster_id, node_id, &hosts, args.lifetime_days.unwrap_or(365))?;
            certs::write(&dir.join(super::NODE_KEY), &issued.key_pem, true, args.overwrite)?;
            certs::write(&dir.join(super::NODE_CERT), &issued.cert_pem, false, args.overwrite)?;
            println!("wrote {} for node {node_id} ({})", dir.join(super::NODE_CERT).display(), hosts.join(", "));
        }
        CertVerb::CreateClient => {
            let ca = Ca::load(&ca_cert, &ca_key)?;
            let issued = ca.client(&args.cluster_id, args.lifetime_days.unwrap_or(365))?;
            certs::write(&dir.join(super::CLIENT_KEY), &issued.key_pem, true, args.overwrite)?;
            certs::write(&dir.join(super::CLIENT_CERT), &issued.cert_pem, false, args.overwrite)?;
            println!("wrote {}", dir.join(super::CLIENT_CERT).display());
        }
        CertVerb::List => list(dir)?,
    }
    Ok(())
}

pub fn default_hosts() -> Vec<String> {
    vec!["localhost".into(), "127.0.0.1".into(), "::1".into()]
}

fn list(dir: &std::path::Path) -> anyhow::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "crt"))
        .collect();
    entries.sort();
    println!("{:<12} {:<4} {:<12} NAMES", "FILE", "CA", "EXPIRES");
    for path in entries {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        match certs::read(&path).and_then(|pem| certs::describe(&pem)) {
            Ok((names, expires, is_ca)) => {
                println!("{name:<12} {:<4} {expires:<12} {}", if is_ca { "yes" } else { "no" }, names.join(", "))
            }
            Err(e) => println!("{name:<12} unreadable: {e}"),
        }
    }
    Ok(())
}
