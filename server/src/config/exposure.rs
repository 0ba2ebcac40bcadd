//! What a node may expose: secrets from files, and the refusal to serve an unauthenticated
//! surface beyond loopback without `--insecure`.

use std::path::Path;

use super::ConfigError;

/// A secret from its flag or its file (trailing newline dropped), not both.
pub fn secret(flag: Option<String>, file: Option<&Path>, what: &str) -> Result<Option<String>, ConfigError> {
    match (flag, file) {
        (Some(_), Some(_)) => Err(ConfigError::Invalid(format!("give the {what} as a flag or as a file, not both"))),
        (Some(v), None) => Ok(Some(v)),
        (None, None) => Ok(None),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::Invalid(format!("cannot read the {what} from {}: {e}", path.display())))?;
            Ok(Some(text.trim_end_matches(['\n', '\r']).to_string()))
        }
    }
}

/// Whether `addr` (host:port) is on the loopback interface.
fn is_loopback(addr: &str) -> bool {
    match addr.parse::<std::net::SocketAddr>() {
        Ok(a) => a.ip().is_loopback(),
        Err(_) => addr.rsplit_once(':').is_some_and(|(host, _)| host == "localhost"),
    }
}

/// Refuses to expose an unauthenticated surface beyond loopback unless --insecure says so.
pub fn check_exposure(
    listen: &str,
    raft_listen: &str,
    tls: bool,
    plain_http: bool,
    internal_api: bool,
    insecure: bool,
) -> Result<(), ConfigError> {
    if insecure {
        return Ok(());
    }
    let local = is_loopback(listen) && is_loopback(raft_listen);
    if !tls && !local {
        return Err(ConfigError::Invalid(format!(
            "refusing to listen on {listen} and {raft_listen} without TLS: give --certs-dir (see `raftchat cert`), \
             or --insecure to run with unauthenticated peers and plain HTTP"
        )));
    }
    if (plain_http || internal_api) && !is_loopback(listen) {
        let what = if internal_api { "--internal-api (no authentication)" } else { "--plain-http" };
        return Err(ConfigError::Invalid(format!(
            "refusing {what} on {listen}, which is not loopback; add --insecure to run it anyway"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses() {
        assert!(is_loopback("127.0.0.1:7700") && is_loopback("[::1]:7700") && is_loopback("localhost:7700"));
        assert!(!is_loopback("0.0.0.0:7700") && !is_loopback("10.0.0.1:7700") && !is_loopback("chat1:7700"));
    }

    #[test]
    fn plain_surfaces_beyond_loopback_need_insecure() {
        let (lo, any) = ("127.0.0.1:7700", "0.0.0.0:7700");
        assert!(check_exposure(lo, lo, false, true, true, false).is_ok(), "loopback without TLS");
        assert!(check_exposure(any, lo, false, true, false, false).is_err(), "no TLS on a public address");
        assert!(check_exposure(any, any, true, false, false, false).is_ok(), "TLS everywhere");
        assert!(check_exposure(any, any, true, true, false, false).is_err(), "--plain-http on a public address");
        assert!(check_exposure(any, any, true, false, true, false).is_err(), "--internal-api on a public address");
        assert!(check_exposure(any, any, false, true, true, true).is_ok(), "--insecure says so");
    }

    #[test]
    fn secrets_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "s3cret-token-value\n").unwrap();
        assert_eq!(secret(None, Some(&f), "x").unwrap().as_deref(), Some("s3cret-token-value"));
        assert!(secret(Some("a".into()), Some(&f), "x").is_err());
        assert!(secret(None, Some(&dir.path().join("missing")), "x").is_err());
    }
}
