//! Passwords (argon2id) and session tokens (HMAC-SHA256 with the cluster secret).
//!
//! A token is `base64url(user id (16) | session id (8) | issued at ms (8 BE) | expires at ms
//! (8 BE) | HMAC-SHA256 of those 40 bytes)`. Every node can check its signature without a
//! lookup; the secret is drawn once at cluster bootstrap and replicated in the cluster layout.
//! Whether the session was revoked is [`crate::service::sessions`]'s question.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::PasswordHash;
use argon2::password_hash::PasswordHasher;
use argon2::password_hash::PasswordVerifier;
use argon2::password_hash::SaltString;
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::Hmac;
use hmac::Mac;
use sha2::Sha256;
use uuid::Uuid;

const TOKEN_DATA: usize = 16 + 8 + 8 + 8;
const TOKEN_BYTES: usize = TOKEN_DATA + 32;

/// What a valid token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claims {
    pub user: Uuid,
    /// Random per login: names the session for logout.
    pub session: u64,
    pub issued_ms: u64,
    pub expires_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("bad token signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
}

/// Hashes a password with argon2id and a random salt (CPU-heavy: call off the async threads).
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

/// Checks a password against a stored PHC hash.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// HMAC-SHA256 of the concatenated `parts` under `secret` (tokens, the media peer token, push
/// signatures). HMAC takes keys of any length, so there is no error to report.
pub fn hmac_sha256(secret: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| <Hmac<Sha256> as hmac::digest::KeyInit>::new(&Default::default()));
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

pub fn issue_token(secret: &[u8], c: &Claims) -> Result<String, TokenError> {
    let mut buf = Vec::with_capacity(TOKEN_BYTES);
    buf.extend_from_slice(c.user.as_bytes());
    buf.extend_from_slice(&c.session.to_be_bytes());
    buf.extend_from_slice(&c.issued_ms.to_be_bytes());
    buf.extend_from_slice(&c.expires_ms.to_be_bytes());
    let sig = hmac_sha256(secret, &[&buf]);
    buf.extend_from_slice(&sig);
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

/// A signed media URL's `sig`: lets `user` fetch media `sha` until `expires_ms` without the
/// session token in the URL (an `<img src>` cannot send a header). Bound to the user, the
/// media and the expiry: a leaked URL shows that one file for a short while.
pub fn media_signature(secret: &[u8], user: Uuid, sha: &[u8; 32], expires_ms: u64) -> String {
    let mut buf = Vec::with_capacity(40);
    buf.extend_from_slice(user.as_bytes());
    buf.extend_from_slice(&expires_ms.to_be_bytes());
    let mac = hmac_sha256(secret, &[b"raftchat media url v1", &buf, sha]);
    buf.extend_from_slice(&mac[..16]);
    URL_SAFE_NO_PAD.encode(buf)
}

/// The user a media signature was made for, if it is valid for `sha` at `now_ms`.
pub fn check_media_signature(secret: &[u8], sig: &str, sha: &[u8; 32], now_ms: u64) -> Result<Uuid, TokenError> {
    let raw = URL_SAFE_NO_PAD.decode(sig.trim()).map_err(|_| TokenError::Malformed)?;
    if raw.len() != 40 {
        return Err(TokenError::Malformed);
    }
    let user = Uuid::from_slice(&raw[..16]).map_err(|_| TokenError::Malformed)?;
    let mut exp = [0u8; 8];
    exp.copy_from_slice(&raw[16..24]);
    let expires_ms = u64::from_be_bytes(exp);
    let expected = media_signature(secret, user, sha, expires_ms);
    if !crate::http::constant_time_eq(expected.as_bytes(), sig.trim().as_bytes()) {
        return Err(TokenError::BadSignature);
    }
    if expires_ms <= now_ms {
        return Err(TokenError::Expired);
    }
    Ok(user)
}

/// The claims of a valid, unexpired token.
pub fn check_token(secret: &[u8], token: &str, now_ms: u64) -> Result<Claims, TokenError> {
    let raw = URL_SAFE_NO_PAD.decode(token.trim()).map_err(|_| TokenError::Malformed)?;
    if raw.len() != TOKEN_BYTES {
        return Err(TokenError::Malformed);
    }
    let (data, sig) = raw.split_at(TOKEN_DATA);
    let mut m = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| TokenError::Malformed)?;
    m.update(data);
    m.verify_slice(sig).map_err(|_| TokenError::BadSignature)?;
    let user = Uuid::from_slice(&data[..16]).map_err(|_| TokenError::Malformed)?;
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&data[i..i + 8]);
        u64::from_be_bytes(b)
    };
    let c = Claims { user, session: u64_at(16), issued_ms: u64_at(24), expires_ms: u64_at(32) };
    if c.expires_ms <= now_ms {
        return Err(TokenError::Expired);
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trip_and_rejections() {
        let s = b"secret-secret-secret-secret-1234";
        let u = Uuid::new_v4();
        let c = Claims { user: u, session: 7, issued_ms: 5, expires_ms: 10_000 };
        let t = issue_token(s, &c).unwrap();
        assert_eq!(check_token(s, &t, 9_999), Ok(c));
        assert_eq!(check_token(s, &t, 10_000), Err(TokenError::Expired));
        assert_eq!(check_token(b"other-secret-other-secret-123456", &t, 1), Err(TokenError::BadSignature));
        let mut bad = t.clone().into_bytes();
        bad[3] = if bad[3] == b'A' { b'B' } else { b'A' };
        assert!(check_token(s, std::str::from_utf8(&bad).unwrap(), 1).is_err());
        assert_eq!(check_token(s, "not a token", 1), Err(TokenError::Malformed));
    }

    #[test]
    fn media_signatures_bind_user_media_and_expiry() {
        let s = b"secret-secret-secret-secret-1234";
        let (u, sha) = (Uuid::new_v4(), [7u8; 32]);
        let sig = media_signature(s, u, &sha, 10_000);
        assert_eq!(check_media_signature(s, &sig, &sha, 9_999), Ok(u));
        assert_eq!(check_media_signature(s, &sig, &sha, 10_000), Err(TokenError::Expired));
        assert_eq!(check_media_signature(s, &sig, &[8u8; 32], 1), Err(TokenError::BadSignature));
        assert_eq!(
            check_media_signature(b"other-secret-other-secret-123456", &sig, &sha, 1),
            Err(TokenError::BadSignature)
        );
        // Another user's id with this signature's MAC does not pass.
        let mut raw = URL_SAFE_NO_PAD.decode(&sig).unwrap();
        raw[0] ^= 1;
        assert!(check_media_signature(s, &URL_SAFE_NO_PAD.encode(raw), &sha, 1).is_err());
    }

    #[test]
    fn passwords_verify() {
        let h = hash_password("hunter22").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("hunter22", &h));
        assert!(!verify_password("hunter23", &h));
        assert!(!verify_password("x", "garbage"));
    }
}
