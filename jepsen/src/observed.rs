//! What a client observed of one message, as the history records it: the entry
//! `[seq, clientMsgId, messageId, sender, timestamp ms, body]` of a read, a final read or a
//! delivery. The checker holds every observation of a message to one identity.

use serde_json::json;
use serde_json::Value;

/// A history entry from a message as the public API (REST history or a WebSocket `message`
/// frame: RFC 3339 timestamps, the body as `message` or `text`) shows it.
pub fn from_public(m: &Value) -> Value {
    let body = if m["message"].is_string() { &m["message"] } else { &m["text"] };
    json!([m["seq"], m["clientMsgId"], m["messageId"], m["from"], rfc3339_ms(m["timestamp"].as_str()), body])
}

/// A history entry from a message as the internal API shows it (timestamps in ms, `text`).
pub fn from_internal(m: &Value) -> Value {
    json!([m["seq"], m["clientMsgId"], m["messageId"], m["from"], m["timestamp"], m["text"]])
}

/// Milliseconds since the epoch of `YYYY-MM-DDTHH:MM:SS.mmmZ` (the only form raftchat writes).
pub fn rfc3339_ms(s: Option<&str>) -> Option<u64> {
    let s = s?;
    let b = s.as_bytes();
    if b.len() != 24 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[19] != b'.' || b[23] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    // Days from civil (Howard Hinnant's algorithm), the inverse of the server's formatter.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let total = ((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000) + ms;
    u64::try_from(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_as_the_server_writes_them() {
        assert_eq!(rfc3339_ms(Some("1970-01-01T00:00:00.000Z")), Some(0));
        assert_eq!(rfc3339_ms(Some("2025-12-15T10:00:00.123Z")), Some(1_765_792_800_123));
        assert_eq!(rfc3339_ms(Some("2000-02-29T00:00:00.000Z")), Some(951_782_400_000));
        assert_eq!(rfc3339_ms(Some("2000-02-29 00:00:00")), None);
        assert_eq!(rfc3339_ms(None), None);
    }

    #[test]
    fn entries_from_both_apis_agree() {
        let public = json!({ "seq": 3, "clientMsgId": "w1-1", "messageId": "m", "from": "u",
            "timestamp": "2025-12-15T10:00:00.123Z", "message": "body of w1-1" });
        let frame = json!({ "seq": 3, "clientMsgId": "w1-1", "messageId": "m", "from": "u",
            "timestamp": "2025-12-15T10:00:00.123Z", "text": "body of w1-1" });
        let internal = json!({ "seq": 3, "clientMsgId": "w1-1", "messageId": "m", "from": "u",
            "timestamp": 1_765_792_800_123u64, "text": "body of w1-1" });
        assert_eq!(from_public(&public), from_internal(&internal));
        assert_eq!(from_public(&frame), from_internal(&internal));
    }
}
