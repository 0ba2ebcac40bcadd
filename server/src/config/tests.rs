//! Tests of the configuration as a whole: flags, file and defaults.

use super::*;

#[test]
fn flags_beat_file_and_file_beats_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("n.toml");
    std::fs::write(&f, "node-id = 3\ncluster-id = \"filec\"\nlisten = \"127.0.0.1:9000\"\n").unwrap();
    let args = NodeArgs { config: Some(f.clone()), cluster_id: Some("flagc".into()), ..Default::default() };
    let c = args.with_file().unwrap().resolve().unwrap();
    assert_eq!(c.core.node_id, 3);
    assert_eq!(c.core.cluster_id, "flagc");
    assert_eq!(c.listen, "127.0.0.1:9000");
    assert_eq!(c.core.data_groups, 3);
    std::fs::write(&f, "bogus-key = 1\n").unwrap();
    assert!(NodeArgs { config: Some(f.clone()), ..Default::default() }.with_file().is_err());
    std::fs::write(&f, "listen = \"0.0.0.0:9000\"\n").unwrap();
    let e = NodeArgs { config: Some(f.clone()), ..Default::default() }.with_file().unwrap().resolve().unwrap_err();
    assert!(e.to_string().contains("--certs-dir"), "{e}");
    let c = NodeArgs { config: Some(f.clone()), insecure: true, ..Default::default() }.with_file().unwrap();
    assert!(c.resolve().unwrap().tls.is_none());
    std::fs::write(&f, "bogus-key = 1\n").unwrap();
    assert!(NodeArgs { config: Some(f), ..Default::default() }.with_file().is_err());
}

#[test]
fn quota_flags_override_their_defaults() {
    let c = NodeArgs::default().resolve().unwrap();
    assert_eq!(c.quotas, crate::service::quotas::QuotaConfig::default());
    let args = NodeArgs {
        receipts_per_sec: Some(0.0),
        typing_burst: Some(3.0),
        chats_created_burst: Some(0.0),
        ws_connections_per_user_max: Some(0),
        upload_mib_per_user_per_day: Some(2),
        ..Default::default()
    };
    let q = args.resolve().unwrap().quotas;
    assert_eq!((q.receipts.per_sec, q.receipts.burst), (0.001, 200.0));
    assert_eq!((q.typing.per_sec, q.typing.burst), (5.0, 3.0));
    assert_eq!(q.chats.burst, 1.0);
    assert_eq!((q.ws_per_user_max, q.upload_bytes_per_day), (1, 2 * 1024 * 1024));
}

#[test]
fn token_lifetimes_default_and_the_old_flag_name_still_works() {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        node: NodeArgs,
    }
    let parse = |args: &[&str]| {
        let cli = <Cli as clap::Parser>::try_parse_from(std::iter::once(&"raftchat").chain(args)).unwrap();
        cli.node.resolve().unwrap()
    };
    let c = parse(&[]);
    assert_eq!((c.access_token_ttl_secs, c.refresh_token_ttl_secs), (3600, 30 * 86_400));
    assert_eq!(parse(&["--token-ttl-secs", "60"]).access_token_ttl_secs, 60);
    let c = parse(&["--token-ttl-secs", "60", "--access-token-ttl-secs", "120", "--refresh-token-ttl-secs", "600"]);
    assert_eq!((c.access_token_ttl_secs, c.refresh_token_ttl_secs), (120, 600), "the new name wins");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("n.toml");
    std::fs::write(&f, "token-ttl-secs = 90\nrefresh-token-ttl-secs = 900\n").unwrap();
    let c = NodeArgs { config: Some(f), ..Default::default() }.with_file().unwrap().resolve().unwrap();
    assert_eq!((c.access_token_ttl_secs, c.refresh_token_ttl_secs), (90, 900));
}
