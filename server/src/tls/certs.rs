//! Generating the cluster CA and the certificates it signs (rcgen; ECDSA P-256).
//!
//! Names follow `raftchat_raft::transport::tls`: a node certificate carries
//! `node-<id>.<cluster>.raftchat.invalid` (its identity to peers) and the hosts clients use; a
//! client certificate carries `admin.<cluster>.raftchat.invalid`. Keys are written 0600.

use std::io::Write;
use std::path::Path;

use raftchat_raft::transport::tls::admin_name;
use raftchat_raft::transport::tls::node_name;
use rcgen::BasicConstraints;
use rcgen::Certificate;
use rcgen::CertificateParams;
use rcgen::DnType;
use rcgen::ExtendedKeyUsagePurpose;
use rcgen::IsCa;
use rcgen::KeyPair;
use rcgen::KeyUsagePurpose;

use super::TlsError;

/// A certificate and its key, PEM-encoded.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    // An hour of slack for clocks that are slightly behind the issuer's.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(days));
}

/// A new cluster CA.
pub fn create_ca(cluster_id: &str, days: u32) -> Result<Issued, TlsError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, format!("raftchat CA {cluster_id}"));
    params.distinguished_name.push(DnType::OrganizationName, "raftchat");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    validity(&mut params, days);
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// The CA, reloaded to sign with.
pub struct Ca {
    cert: Certificate,
    key: KeyPair,
}

impl Ca {
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, TlsError> {
        let key = KeyPair::from_pem(key_pem)?;
        let params = CertificateParams::from_ca_cert_pem(cert_pem)?;
        // Re-signing the parsed parameters gives a certificate with the same subject and key,
        // which is all a child's signature refers to.
        let cert = params.self_signed(&key)?;
        Ok(Ca { cert, key })
    }

    pub fn load(cert: &Path, key: &Path) -> Result<Ca, TlsError> {
        Ca::from_pem(&read(cert)?, &read(key)?)
    }

    fn sign(&self, mut params: CertificateParams, cn: String, days: u32) -> Result<Issued, TlsError> {
        params.distinguished_name.push(DnType::CommonName, cn);
        params.distinguished_name.push(DnType::OrganizationName, "raftchat");
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        validity(&mut params, days);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// A node's certificate: its identity to peers, and the hosts (names or IPs) clients use
    /// to reach it over HTTPS. Valid for serving and for dialing (server and client auth).
    pub fn node(&self, cluster_id: &str, node: u64, hosts: &[String], days: u32) -> Result<Issued, TlsError> {
        let mut names = vec![node_name(cluster_id, node)];
        names.extend(hosts.iter().cloned());
        let mut params = CertificateParams::new(names)?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, format!("raftchat node {node}"), days)
    }

    /// An administrator's client certificate (for `raftchat admin --certs-dir`).
    pub fn client(&self, cluster_id: &str, days: u32) -> Result<Issued, TlsError> {
        let mut params = CertificateParams::new(vec![admin_name(cluster_id)])?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, "raftchat admin".into(), days)
    }
}

pub fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|e| TlsError::Io { path: path.to_path_buf(), source: e })
}

/// Writes a file, 0600 for keys; refuses to overwrite unless `force`.
pub fn write(path: &Path, text: &str, secret: bool, force: bool) -> Result<(), TlsError> {
    let io = |e| TlsError::Io { path: path.to_path_buf(), source: e };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir).map_err(io)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut f = opts.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            TlsError::Invalid(format!("{} exists; pass --overwrite to replace it", path.display()))
        } else {
            io(e)
        }
    })?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Creates `dir` (and parents) with mode 0700 when it does not exist.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

/// What a certificate says: its names and expiry (for `raftchat cert list`).
pub fn describe(cert_pem: &str) -> Result<(Vec<String>, String, bool), TlsError> {
    let params = CertificateParams::from_ca_cert_pem(cert_pem)?;
    let mut names: Vec<String> = params
        .subject_alt_names
        .iter()
        .map(|n| match n {
            rcgen::SanType::DnsName(d) => d.as_str().to_string(),
            rcgen::SanType::IpAddress(ip) => ip.to_string(),
            other => format!("{other:?}"),
        })
        .collect();
    if names.is_empty() {
        if let Some(rcgen::DnValue::Utf8String(cn)) = params.distinguished_name.get(&DnType::CommonName) {
            names.push(cn.clone());
        }
    }
    let is_ca = matches!(params.is_ca, IsCa::Ca(_));
    Ok((names, params.not_after.date().to_string(), is_ca))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reloaded_ca_signs_certificates_that_chain_to_the_original() {
        let ca = create_ca("c1", 30).unwrap();
        let signer = Ca::from_pem(&ca.cert_pem, &ca.key_pem).unwrap();
        let node = signer.node("c1", 2, &["localhost".into(), "127.0.0.1".into()], 30).unwrap();
        let (names, _, is_ca) = describe(&node.cert_pem).unwrap();
        assert!(!is_ca);
        assert!(names.contains(&node_name("c1", 2)) && names.contains(&"127.0.0.1".to_string()), "{names:?}");
        // The node certificate verifies against the original CA certificate.
        use rustls::pki_types::pem::PemObject;
        let ca_der = rustls::pki_types::CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap();
        let node_der = rustls::pki_types::CertificateDer::from_pem_slice(node.cert_pem.as_bytes()).unwrap();
        let roots = raftchat_raft::transport::tls::roots(&[ca_der]).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots,
            raftchat_raft::transport::tls::provider(),
        )
        .build()
        .unwrap();
        let now = rustls::pki_types::UnixTime::now();
        assert!(verifier.verify_client_cert(&node_der, &[], now).is_ok());
        assert!(raftchat_raft::transport::tls::cert_has_name(&node_der, &node_name("c1", 2)));
        assert!(!raftchat_raft::transport::tls::cert_has_name(&node_der, &node_name("c1", 3)));
    }
}
