//! Headless Chromium driven through chromedriver (WebDriver): one browser session per user.

use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use fantoccini::Client;
use fantoccini::Locator;
use raftchat_tests::eventually;
use serde_json::Value;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A chromedriver process, stopped when dropped.
pub struct Driver {
    child: Child,
    pub url: String,
    /// With secure clusters: the browser's home, whose NSS database trusts the test CA.
    _home: Option<tempfile::TempDir>,
}

/// A home directory whose NSS database (which Chromium on Linux reads) trusts the test CA, so
/// the browser verifies the nodes' certificates as a user's would once the CA is installed.
fn trusting_home() -> anyhow::Result<tempfile::TempDir> {
    let ca = raftchat_tests::tls::ca(&raftchat_tests::binary()?)?;
    let home = tempfile::tempdir()?;
    let db = home.path().join(".pki/nssdb");
    std::fs::create_dir_all(&db)?;
    let db_arg = format!("sql:{}", db.display());
    let run = |args: &[&str]| -> anyhow::Result<()> {
        let out = Command::new("certutil").args(args).output().context("running certutil (Debian: libnss3-tools)")?;
        anyhow::ensure!(out.status.success(), "certutil {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        Ok(())
    };
    run(&["-N", "-d", &db_arg, "--empty-password"])?;
    let ca_file = ca.dir.join("ca.crt").to_string_lossy().into_owned();
    run(&["-A", "-d", &db_arg, "-t", "C,,", "-n", "raftchat-test-ca", "-i", &ca_file])?;
    Ok(home)
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    /// With `secure`, the browser trusts the test CA (secure clusters).
    pub async fn start(secure: bool) -> anyhow::Result<Driver> {
        anyhow::ensure!(
            std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists(),
            "{CHROMIUM} and {CHROMEDRIVER} are needed (Debian packages chromium and chromium-driver; .ci/run installs them)"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let home = if secure { Some(trusting_home()?) } else { None };
        let mut cmd = Command::new(CHROMEDRIVER);
        if let Some(h) = &home {
            cmd.env("HOME", h.path());
        }
        let child = cmd
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting chromedriver")?;
        let driver = Driver { child, url: format!("http://127.0.0.1:{port}"), _home: home };
        let http = reqwest::Client::new();
        eventually(Duration::from_secs(20), "chromedriver to answer", || async {
            let v: Value = http.get(format!("{}/status", driver.url)).send().await.ok()?.json().await.ok()?;
            (v["value"]["ready"] == true).then_some(())
        })
        .await?;
        Ok(driver)
    }

    /// A new browser (its own profile, so its own localStorage).
    pub async fn browser(&self) -> anyhow::Result<Client> {
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), "chrome".into());

        let args: Vec<&str> = vec![
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1100,720",
            "--force-device-scale-factor=1",
        ];
        caps.insert("goog:chromeOptions".into(), serde_json::json!({ "binary": CHROMIUM, "args": args }));
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        Ok(fantoccini::ClientBuilder::new(connector).capabilities(caps).connect(&self.url).await?)
    }
}

/// Evaluates `script` (a JS expression) until it is true.
pub async fn until(b: &Client, script: &str, what: &str, timeout: Duration) -> anyhow::Result<()> {
    let code = format!("return !!({script});");
    eventually(timeout, what, || async { (b.execute(&code, vec![]).await.ok()? == Value::Bool(true)).then_some(()) })
        .await
}

pub async fn js(b: &Client, script: &str) -> anyhow::Result<Value> {
    Ok(b.execute(&format!("return ({script});"), vec![]).await?)
}

pub async fn fill(b: &Client, css: &str, text: &str) -> anyhow::Result<()> {
    let e = b.find(Locator::Css(css)).await.with_context(|| format!("finding {css}"))?;
    e.clear().await?;
    e.send_keys(text).await.with_context(|| format!("typing into {css}"))?;
    Ok(())
}

/// Clicks `css`, again if the page re-rendered it between finding and clicking.
pub async fn click(b: &Client, css: &str) -> anyhow::Result<()> {
    eventually(Duration::from_secs(10), &format!("clicking {css}"), || async {
        b.find(Locator::Css(css)).await.ok()?.click().await.ok()
    })
    .await
}

/// Where the screenshots go: `target/web-screenshots/`.
pub fn shots_dir() -> anyhow::Result<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("target").join("web-screenshots");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

pub async fn screenshot(b: &Client, name: &str) -> anyhow::Result<PathBuf> {
    let path = shots_dir()?.join(format!("{name}.png"));
    std::fs::write(&path, b.screenshot().await?)?;
    Ok(path)
}

/// A `w` x `h` RGB PNG with a colour gradient (stored, uncompressed deflate blocks).
pub fn png(w: u32, h: u32) -> Vec<u8> {
    let mut raw = Vec::new();
    for y in 0..h {
        raw.push(0);
        for x in 0..w {
            raw.extend_from_slice(&[(x * 255 / w) as u8, (y * 255 / h) as u8, 160]);
        }
    }
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        z.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for byte in &raw {
        a = (a + u32::from(*byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut out = vec![0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];
    let mut chunk = |kind: &[u8], data: &[u8]| {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.finalize().to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &z);
    chunk(b"IEND", &[]);
    out
}
