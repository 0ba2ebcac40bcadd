//! Which media a browser may show inline: an allowlist of image, video and audio types whose
//! first bytes match the type declared at upload. Everything else is served as an attachment of
//! type `application/octet-stream`, and every media response carries `Content-Security-Policy:
//! sandbox` and `nosniff`, so an uploaded HTML or SVG file never runs on the web client's origin.

/// Whether `mime` is on the allowlist and `head` (the first bytes of the file) has its magic.
pub fn inline(mime: &str, head: &[u8]) -> bool {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    match mime.split(';').next().unwrap_or("").trim().to_ascii_lowercase().as_str() {
        "image/png" => at(0, b"\x89PNG\r\n\x1a\n"),
        "image/jpeg" => at(0, b"\xff\xd8\xff"),
        "image/gif" => at(0, b"GIF87a") || at(0, b"GIF89a"),
        "image/webp" => at(0, b"RIFF") && at(8, b"WEBP"),
        "video/mp4" | "video/quicktime" | "audio/mp4" => at(4, b"ftyp"),
        "video/webm" | "audio/webm" => at(0, b"\x1a\x45\xdf\xa3"),
        "audio/ogg" | "video/ogg" => at(0, b"OggS"),
        "audio/mpeg" => at(0, b"ID3") || (head.len() >= 2 && head[0] == 0xff && head[1] & 0xe0 == 0xe0),
        "audio/wav" | "audio/x-wav" => at(0, b"RIFF") && at(8, b"WAVE"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::inline;

    #[test]
    fn only_inert_types_whose_bytes_agree() {
        assert!(inline("image/png", b"\x89PNG\r\n\x1a\n...."));
        assert!(inline("IMAGE/PNG; charset=x", b"\x89PNG\r\n\x1a\n"));
        assert!(!inline("image/png", b"<html><script>alert(1)</script>"), "a PNG that is not one");
        assert!(!inline("text/html", b"<html>"));
        assert!(!inline("image/svg+xml", b"<svg onload=alert(1)>"), "SVG runs scripts: never inline");
        assert!(inline("video/mp4", b"\0\0\0\x18ftypmp42"));
        assert!(!inline("video/mp4", &[7u8; 64]));
        assert!(!inline("image/jpeg", b""));
    }
}
