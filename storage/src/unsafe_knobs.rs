//! Deliberate bugs for the Jepsen suite's negative controls.
//!
//! Each knob breaks one guarantee on purpose, so that `jepsen` can show its checker finds the
//! anomaly the bug causes (a checker that never fails proves nothing). The knobs exist only in
//! builds with the non-default cargo feature `unsafe-knobs`; without it [`on`] is a constant
//! `false` and the optimizer removes every knob's code path. The binary enables knobs once at
//! start (`raftchat node --unsafe-knob NAME --i-know-this-is-unsafe`) and never again, so the set
//! is a process-wide, write-once value, like a failpoint registry.

/// One deliberate bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Knob {
    /// The gateway answers a send with a predicted seq before the entry is committed.
    AckBeforeCommit,
    /// The WAL reports appends and votes durable without fdatasync.
    SkipFsync,
    /// Linearizable reads are served from the nearest replica without a leader check.
    LocalReads,
    /// Apply ignores the idempotency table: a retried clientMsgId becomes a second message.
    NoDedup,
    /// Snapshots leave the idempotency table out.
    DedupNotInSnapshot,
    /// The gateway picks the seq from its own view of the chat; apply trusts it.
    SeqAtGateway,
}

impl Knob {
    pub const ALL: [Knob; 6] = [
        Knob::AckBeforeCommit,
        Knob::SkipFsync,
        Knob::LocalReads,
        Knob::NoDedup,
        Knob::DedupNotInSnapshot,
        Knob::SeqAtGateway,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Knob::AckBeforeCommit => "ack_before_commit",
            Knob::SkipFsync => "skip_fsync",
            Knob::LocalReads => "local_reads",
            Knob::NoDedup => "no_dedup",
            Knob::DedupNotInSnapshot => "dedup_not_in_snapshot",
            Knob::SeqAtGateway => "seq_at_gateway",
        }
    }

    pub fn parse(name: &str) -> Option<Knob> {
        Knob::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// Whether this build has the `unsafe-knobs` feature.
pub const COMPILED: bool = cfg!(feature = "unsafe-knobs");

#[cfg(feature = "unsafe-knobs")]
static ENABLED: std::sync::OnceLock<Vec<Knob>> = std::sync::OnceLock::new();

/// Turns `knobs` on for the life of the process. Returns false when this build has no knobs or
/// they were already set.
pub fn enable(knobs: Vec<Knob>) -> bool {
    #[cfg(feature = "unsafe-knobs")]
    {
        if !knobs.is_empty() {
            tracing::warn!(?knobs, "UNSAFE KNOBS ENABLED: this node breaks raftchat's guarantees on purpose");
        }
        ENABLED.set(knobs).is_ok()
    }
    #[cfg(not(feature = "unsafe-knobs"))]
    {
        let _ = knobs;
        false
    }
}

/// Whether `knob` is on.
#[inline]
pub fn on(knob: Knob) -> bool {
    #[cfg(feature = "unsafe-knobs")]
    {
        ENABLED.get().is_some_and(|v| v.contains(&knob))
    }
    #[cfg(not(feature = "unsafe-knobs"))]
    {
        let _ = knob;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in Knob::ALL {
            assert_eq!(Knob::parse(k.name()), Some(k));
        }
        assert_eq!(Knob::parse("fast_mode"), None);
    }

    #[cfg(not(feature = "unsafe-knobs"))]
    #[test]
    fn default_build_has_no_knobs() {
        assert!(!enable(vec![Knob::NoDedup]));
        assert!(!on(Knob::NoDedup));
    }
}
