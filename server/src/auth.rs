//! Passwords (argon2id) and session tokens (HMAC-SHA256 with the cluster secret).
//!
//! Two kinds of token, told apart by their length and signed under different inputs, so that
//! neither is ever accepted as the other ([`TokenError::WrongKind`]):
//!
//! - an access token, `base64url(user id (16) | session id (8) | session start ms (8 BE) |
//!   expires at ms (8 BE) | HMAC-SHA256 of those 40 bytes)`: the bearer token of every call;
//! - a refresh token, `base64url(user id (16) | session id (8) | session start ms (8 BE) |
//!   issued at ms (8 BE) | expires at ms (8 BE) | generation (8 BE) | HMAC-SHA256 of
//!   [`REFRESH_DOMAIN`] and those 48 bytes)`: only for `POST /api/v1/sessions/refresh`.
//!
//! Every node can check a signature without a lookup; the secret is drawn once at cluster
//! bootstrap and replicated in the cluster layout. Whether the session was revoked, and which
//! refresh generation is current, is [`crate::service::sessions`]'s and
//! [`crate::service::refresh`]'s question.

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
const REFRESH_DATA: usize = 16 + 8 + 8 + 8 + 8 + 8;
const REFRESH_BYTES: usize = REFRESH_DATA + 32;
/// Signed ahead of a refresh token's fields: no access token's signature (over 40 bytes without
/// it) can stand for a refresh token's, nor the other way round.
pub const REFRESH_DOMAIN: &[u8] = b"raftchat refresh token v1";

/// What a valid access token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claims {
    pub user: Uuid,
    /// Random per login: names the session for logout.
    pub session: u64,
    /// When the session began (its login). A refreshed token keeps it, so a revoke-all cut-off
    /// ends every token of a session begun before it.
    pub issued_ms: u64,
    pub expires_ms: u64,
}

/// What a valid refresh token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshClaims {
    pub user: Uuid,
    pub session: u64,
    /// When the session began (as [`Claims::issued_ms`]).
    pub session_ms: u64,
    /// When this refresh token was issued (at the login or at its rotation).
    pub issued_ms: u64,
    pub expires_ms: u64,
    /// The session's refresh generation this token may spend: 0 at login, one more per rotation.
    pub generation: u64,
}

impl RefreshClaims {
    /// The session as the revocation check sees it.
    pub fn session_claims(&self) -> Claims {
        Claims { user: self.user, session: self.session, issued_ms: self.session_ms, expires_ms: self.expires_ms }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("bad token signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    /// A genuine token of the other kind: a refresh token used as a bearer token, or an access
    /// token sent to be refreshed.
    #[error("wrong kind of token: {0}")]
    WrongKind(&'static str),
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

pub fn issue_refresh_token(secret: &[u8], c: &RefreshClaims) -> String {
    let mut buf = Vec::with_capacity(REFRESH_BYTES);
    buf.extend_from_slice(c.user.as_bytes());
    for v in [c.session, c.session_ms, c.issued_ms, c.expires_ms, c.generation] {
        buf.extend_from_slice(&v.to_be_bytes());
    }
    let sig = hmac_sha256(secret, &[REFRESH_DOMAIN, &buf]);
    buf.extend_from_slice(&sig);
    URL_SAFE_NO_PAD.encode(buf)
}

/// Which kind of token `raw` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Access,
    Refresh,
}

/// The kind and the signed fields of a token whose signature is good.
fn verified(secret: &[u8], token: &str) -> Result<(Kind, Vec<u8>), TokenError> {
    let mut raw = URL_SAFE_NO_PAD.decode(token.trim()).map_err(|_| TokenError::Malformed)?;
    let (kind, data_len) = match raw.len() {
        TOKEN_BYTES => (Kind::Access, TOKEN_DATA),
        REFRESH_BYTES => (Kind::Refresh, REFRESH_DATA),
        _ => return Err(TokenError::Malformed),
    };
    let sig = raw.split_off(data_len);
    let mut m = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| TokenError::Malformed)?;
    if kind == Kind::Refresh {
        m.update(REFRESH_DOMAIN);
    }
    m.update(&raw);
    m.verify_slice(&sig).map_err(|_| TokenError::BadSignature)?;
    Ok((kind, raw))
}

/// The big-endian u64 at `i` of verified token data (its length is checked by then).
fn u64_at(data: &[u8], i: usize) -> u64 {
    data.get(i..i + 8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_be_bytes)
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

/// The claims of a valid, unexpired access token.
pub fn check_token(secret: &[u8], token: &str, now_ms: u64) -> Result<Claims, TokenError> {
    let (kind, data) = verified(secret, token)?;
    if kind != Kind::Access {
        return Err(TokenError::WrongKind("a refresh token is only for POST /api/v1/sessions/refresh"));
    }
    let user = Uuid::from_slice(&data[..16]).map_err(|_| TokenError::Malformed)?;
    let c = Claims { user, session: u64_at(&data, 16), issued_ms: u64_at(&data, 24), expires_ms: u64_at(&data, 32) };
    if c.expires_ms <= now_ms {
        return Err(TokenError::Expired);
    }
    Ok(c)
}

/// The claims of a valid, unexpired refresh token.
pub fn check_refresh_token(secret: &[u8], token: &str, now_ms: u64) -> Result<RefreshClaims, TokenError> {
    let (kind, data) = verified(secret, token)?;
    if kind != Kind::Refresh {
        return Err(TokenError::WrongKind("an access token cannot be refreshed; send the refresh token"));
    }
    let user = Uuid::from_slice(&data[..16]).map_err(|_| TokenError::Malformed)?;
    let c = RefreshClaims {
        user,
        session: u64_at(&data, 16),
        session_ms: u64_at(&data, 24),
        issued_ms: u64_at(&data, 32),
        expires_ms: u64_at(&data, 40),
        generation: u64_at(&data, 48),
    };
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
    fn access_and_refresh_tokens_are_never_taken_for_each_other() {
        let s = b"secret-secret-secret-secret-1234";
        let u = Uuid::new_v4();
        let r = RefreshClaims { user: u, session: 7, session_ms: 5, issued_ms: 50, expires_ms: 10_000, generation: 3 };
        let refresh = issue_refresh_token(s, &r);
        assert_eq!(check_refresh_token(s, &refresh, 9_999), Ok(r));
        assert_eq!(check_refresh_token(s, &refresh, 10_000), Err(TokenError::Expired));
        assert_eq!(r.session_claims(), Claims { user: u, session: 7, issued_ms: 5, expires_ms: 10_000 });
        // A refresh token is no bearer token, and an access token cannot be refreshed.
        assert!(matches!(check_token(s, &refresh, 1), Err(TokenError::WrongKind(_))));
        let access = issue_token(s, &r.session_claims()).unwrap();
        assert!(matches!(check_refresh_token(s, &access, 1), Err(TokenError::WrongKind(_))));
        // A refresh token's fields signed the way an access token is signed (no domain) fail.
        let mut raw = URL_SAFE_NO_PAD.decode(&refresh).unwrap();
        raw.truncate(REFRESH_DATA);
        let sig = hmac_sha256(s, &[&raw]);
        raw.extend_from_slice(&sig);
        assert_eq!(check_refresh_token(s, &URL_SAFE_NO_PAD.encode(&raw), 1), Err(TokenError::BadSignature));
        // Another generation under the same signature fails; so does another secret.
        let mut raw = URL_SAFE_NO_PAD.decode(&refresh).unwrap();
        raw[REFRESH_DATA - 1] ^= 1;
        assert_eq!(check_refresh_token(s, &URL_SAFE_NO_PAD.encode(&raw), 1), Err(TokenError::BadSignature));
        assert_eq!(
            check_refresh_token(b"other-secret-other-secret-123456", &refresh, 1),
            Err(TokenError::BadSignature)
        );
        assert_eq!(check_refresh_token(s, "not a token", 1), Err(TokenError::Malformed));
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
