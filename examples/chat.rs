//! An interactive terminal chat client.
//!
//! `cargo run -p raftchat-tests --example chat -- --server ws://127.0.0.1:7700 --user alice [--password PW]`
//!
//! Registers the user on first use. Commands: `/to NAME` (direct chat), `/group NAME USER...`
//! (invites them), `/join CHAT_ID` (accepts an invite),
//! `/chats`, `/open CHAT_ID`, `/history`, `/quit`; any other line is sent to the open chat.

use std::collections::HashMap;
use std::time::Duration;

use raftchat_tests::chat::Api;
use raftchat_tests::chat::Ws;
use tokio::io::AsyncBufReadExt;
use uuid::Uuid;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = arg("--server").unwrap_or_else(|| "ws://127.0.0.1:7700".into());
    let Some(user) = arg("--user") else {
        eprintln!("usage: chat --server ws://HOST:PORT --user NAME [--password PW]");
        std::process::exit(2);
    };
    let password = arg("--password").unwrap_or_else(|| format!("{user}-password"));
    let base = server.replacen("ws", "http", 1);
    let api = Api::new(&base);
    if let Err(e) = api.register(&user, &password).await {
        if !e.to_string().contains("username_taken") {
            return Err(e);
        }
    }
    let me = api.login(&user, &password).await?;
    let mut ws = Ws::connect(&base, &me, true).await?;
    println!(
        "signed in as {user} ({}) on {base}. /to NAME, /group NAME USER..., /join ID, /chats, /open ID, /history, /quit",
        me.user
    );
    let mut names: HashMap<Uuid, String> = HashMap::from([(me.user, user.clone())]);
    let mut current: Option<Uuid> = None;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut counter = 0u64;
    loop {
        tokio::select! {
            frame = ws.next(Duration::from_secs(3600)) => {
                let Some(f) = frame else { println!("connection closed"); return Ok(()) };
                match f["type"].as_str() {
                    Some("message") => {
                        let from: Uuid = serde_json::from_value(f["from"].clone()).unwrap_or_default();
                        let name = names.get(&from).cloned().unwrap_or_else(|| from.to_string().chars().take(8).collect());
                        println!("[{} #{}] {name}: {}", f["chatId"].as_str().unwrap_or("").get(..8).unwrap_or(""), f["seq"], f["text"].as_str().unwrap_or(""));
                    }
                    Some("ack") => println!("  (sent #{})", f["seq"]),
                    Some("receipt") => {}
                    Some("chat") => println!("  (chat {} {})", f["chatId"], if f["member"] == true { "joined" } else { "left" }),
                    Some("invite") => println!("  (invited to {} {}: /join {})", f["name"], f["chatId"], f["chatId"].as_str().unwrap_or("")),
                    _ => println!("  {f}"),
                }
            }
            line = lines.next_line() => {
                let Some(line) = line? else { return Ok(()) };
                let words: Vec<&str> = line.split_whitespace().collect();
                let result: anyhow::Result<()> = async {
                    match words.first().copied() {
                        Some("/quit") => std::process::exit(0),
                        Some("/to") if words.len() == 2 => {
                            let other = api.lookup(&me, words[1]).await?;
                            names.insert(other, words[1].to_string());
                            current = Some(api.direct(&me, other).await?);
                            println!("  talking to {}", words[1]);
                        }
                        Some("/group") if words.len() >= 2 => {
                            let mut members = Vec::new();
                            for n in &words[2..] {
                                let id = api.lookup(&me, n).await?;
                                names.insert(id, n.to_string());
                                members.push(id);
                            }
                            current = Some(api.group_invite(&me, words[1], &members).await?);
                            println!("  group {} created; its members join when they accept", words[1]);
                        }
                        Some("/join") if words.len() == 2 => {
                            let chat = Uuid::parse_str(words[1])?;
                            api.join(&me, chat).await?;
                            current = Some(chat);
                            println!("  joined");
                        }
                        Some("/chats") => {
                            for c in api.chats(&me).await? {
                                println!("  {} {} {} unread {}", c["chatId"].as_str().unwrap_or(""), c["type"], c["name"], c["unread"]);
                            }
                        }
                        Some("/open") if words.len() == 2 => current = Some(Uuid::parse_str(words[1])?),
                        Some("/history") => {
                            let chat = current.ok_or_else(|| anyhow::anyhow!("no chat open"))?;
                            for m in api.history(&me, chat, 0).await? {
                                println!("  #{} {}: {}", m["seq"], m["from"].as_str().unwrap_or("").get(..8).unwrap_or(""), m["message"].as_str().unwrap_or(""));
                            }
                        }
                        Some(w) if w.starts_with('/') => println!("  unknown command"),
                        Some(_) => {
                            let chat = current.ok_or_else(|| anyhow::anyhow!("open a chat first: /to NAME"))?;
                            counter += 1;
                            let frame = serde_json::json!({ "type": "message", "chatId": chat, "text": line, "clientMsgId": format!("{}-{counter}", me.user) });
                            ws.send(frame).await?;
                        }
                        None => {}
                    }
                    Ok(())
                }.await;
                if let Err(e) = result {
                    println!("  error: {e}");
                }
            }
        }
    }
}
