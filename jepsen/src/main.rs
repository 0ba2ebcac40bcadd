//! `jepsen check HISTORY.jsonl`: checks a history and prints the report as JSON.
//! Exit code: 0 valid, 1 invalid, 2 unknown or a harness error.

use clap::Parser;

#[derive(Parser)]
#[command(name = "jepsen", about = "Jepsen-style consistency checking for raftchat")]
enum Cli {
    /// Check a JSON-lines history.
    Check { history: std::path::PathBuf },
}

fn main() -> std::process::ExitCode {
    let Cli::Check { history } = Cli::parse();
    let text = match std::fs::read_to_string(&history) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("jepsen: cannot read {}: {e}", history.display());
            return std::process::ExitCode::from(2);
        }
    };
    let events = match jepsen::history::parse(&text) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("jepsen: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let report = jepsen::checker::check(&events);
    println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    std::process::ExitCode::from(match report.verdict {
        jepsen::checker::Verdict::Valid => 0,
        jepsen::checker::Verdict::Invalid => 1,
        jepsen::checker::Verdict::Unknown => 2,
    })
}
