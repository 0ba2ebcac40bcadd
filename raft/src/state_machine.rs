//! openraft's `RaftStateMachine` for one group: applies entries through [`crate::apply`] and
//! [`crate::meta`], and builds and installs snapshot files through `raftchat_storage::snapshot`.

use std::path::Path;

use openraft::storage::RaftStateMachine;
use openraft::storage::Snapshot;
use openraft::EntryPayload;
use openraft::ErrorSubject;
use openraft::ErrorVerb;
use openraft::LogId;
use openraft::OptionalSend;
use openraft::RaftSnapshotBuilder;
use openraft::SnapshotMeta;
use openraft::StorageError as RaftStorageError;
use openraft::StoredMembership;
use raftchat_storage::chat_store::AppliedState;
use raftchat_storage::chat_store::GroupState;
use raftchat_storage::chat_store::StateDb;
use raftchat_storage::error::to_raft_io;
use raftchat_storage::snapshot;
use raftchat_storage::snapshot::SnapshotData;
use raftchat_storage::snapshot::SnapshotDir;
use raftchat_storage::StorageError;
use std::sync::Arc;

use crate::events::EventLog;
use tokio::sync::watch;

use crate::apply::Applied;
use crate::meta::ClusterLayout;
use crate::meta::LAYOUT_KEY;
use crate::types::Entry;
use crate::types::GroupId;
use crate::types::Request;
use crate::types::Response;
use crate::types::TypeConfig;

/// Where applied changes are announced.
#[derive(Clone, Default)]
pub struct Listeners {
    /// Chat events, kept in a bounded ring per group for pollers.
    pub events: Option<Arc<EventLog>>,
    /// The cluster layout (meta group only).
    pub layout: Option<watch::Sender<Option<ClusterLayout>>>,
    /// Told how long each snapshot build and install took.
    pub snapshots: Option<Arc<SnapshotObserver>>,
}

/// What a snapshot observer hears about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotEvent {
    Built,
    Installed,
}

/// Set once (by the metrics) on the node; every group's state machine reports to it.
pub type SnapshotObserver = std::sync::OnceLock<Box<dyn Fn(SnapshotEvent, std::time::Duration) + Send + Sync>>;

/// What one apply call produced.
struct AppliedBatch {
    responses: Vec<Response>,
    events: Vec<Applied>,
    layout: Option<ClusterLayout>,
}

pub struct GroupStateMachine {
    group: GroupId,
    state: GroupState,
    snapdir: SnapshotDir,
    applied: AppliedState,
    listeners: Listeners,
}

fn sm_err(e: StorageError, verb: ErrorVerb) -> RaftStorageError<u64> {
    to_raft_io(e, ErrorSubject::StateMachine, verb)
}

fn snap_err(e: StorageError, verb: ErrorVerb) -> RaftStorageError<u64> {
    to_raft_io(e, ErrorSubject::Snapshot(None), verb)
}

impl GroupStateMachine {
    fn observe(&self, event: SnapshotEvent, took: std::time::Duration) {
        if let Some(f) = self.listeners.snapshots.as_ref().and_then(|o| o.get()) {
            f(event, took);
        }
    }

    /// Opens a group's state, first restoring it from its snapshot if it fell behind.
    pub fn open(group: GroupId, db: &StateDb, snapshots: &Path, listeners: Listeners) -> Result<Self, StorageError> {
        let state = db.open_group(group)?;
        let snapdir = SnapshotDir::open(snapshots, group)?;
        snapshot::restore_if_behind(&state, &snapdir)?;
        let applied = state.applied()?;
        let sm = GroupStateMachine { group, state, snapdir, applied, listeners };
        sm.publish_layout()?;
        Ok(sm)
    }

    /// A handle for readers (history queries) that stays valid across snapshot installs.
    pub fn state(&self) -> GroupState {
        self.state.clone()
    }

    fn publish_layout(&self) -> Result<(), StorageError> {
        if let Some(tx) = &self.listeners.layout {
            let layout = self.state.kv_get(LAYOUT_KEY)?.map(|b| crate::meta::read_layout(&b)).transpose()?;
            tx.send_replace(layout);
        }
        Ok(())
    }

    fn apply_entries(&mut self, entries: Vec<Entry>) -> Result<AppliedBatch, StorageError> {
        let mut w = self.state.writer()?;
        let mut responses = Vec::with_capacity(entries.len());
        let mut events = Vec::new();
        let mut layout = None;
        for entry in entries {
            self.applied.last_applied = Some(entry.log_id);
            w.set_log_index(entry.log_id.index);
            let resp = match entry.payload {
                EntryPayload::Blank => Response::None,
                EntryPayload::Membership(m) => {
                    self.applied.membership = StoredMembership::new(Some(entry.log_id), m);
                    Response::None
                }
                EntryPayload::Normal(Request::Chat(batch)) => {
                    let cmds = batch.commands().map_err(|e| StorageError::codec("command batch", e))?;
                    let mut outs = Vec::with_capacity(cmds.len());
                    for cmd in &cmds {
                        let (out, ev) = crate::apply::apply(&mut w, cmd)?;
                        outs.push(out);
                        events.extend(ev);
                    }
                    Response::Chat(outs)
                }
                EntryPayload::Normal(Request::Meta(cmd)) => {
                    if let Some(l) = crate::meta::apply(&mut w, &cmd)? {
                        layout = Some(l);
                    }
                    Response::Meta
                }
            };
            responses.push(resp);
        }
        w.commit(&mut self.applied)?;
        Ok(AppliedBatch { responses, events, layout })
    }
}

impl RaftStateMachine<TypeConfig> for GroupStateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, openraft::BasicNode>), RaftStorageError<u64>> {
        Ok((self.applied.last_applied, self.applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, RaftStorageError<u64>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let AppliedBatch { responses, events, layout } =
            self.apply_entries(entries).map_err(|e| sm_err(e, ErrorVerb::Write))?;
        if let Some(log) = &self.listeners.events {
            log.push(self.group, events);
        }
        if let (Some(tx), Some(l)) = (&self.listeners.layout, layout) {
            tx.send_replace(Some(l));
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // Runs between applies: the capture is a consistent cut at `self.applied`.
        SnapshotBuilder {
            capture: snapshot::capture(&self.state),
            snapdir: self.snapdir.clone(),
            group: self.group,
            observer: self.listeners.snapshots.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotData>, RaftStorageError<u64>> {
        let f = self.snapdir.receive_file().map_err(|e| snap_err(e, ErrorVerb::Write))?;
        Ok(Box::new(SnapshotData::receiving(tokio::fs::File::from_std(f))))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, openraft::BasicNode>,
        snapshot: Box<SnapshotData>,
    ) -> Result<(), RaftStorageError<u64>> {
        let mut file = match snapshot.into_received().await {
            Ok(f) => f,
            // A stream handed over whole (`Raft::install_full_snapshot`): into a file first.
            Err(mut stream) => {
                let f = self.snapdir.receive_file().map_err(|e| snap_err(e, ErrorVerb::Write))?;
                let mut out = tokio::fs::File::from_std(f);
                tokio::io::copy(&mut stream, &mut out)
                    .await
                    .map_err(|e| snap_err(StorageError::Io { path: "snapshot".into(), source: e }, ErrorVerb::Write))?;
                out.into_std().await
            }
        };
        let state = self.state.clone();
        let dir = self.snapdir.clone();
        let started = std::time::Instant::now();
        let installed = tokio::task::spawn_blocking(move || snapshot::install_stream(&state, &dir, &mut file))
            .await
            .map_err(|e| {
                snap_err(StorageError::Corrupt { path: "snapshot".into(), reason: e.to_string() }, ErrorVerb::Write)
            })?
            .map_err(|e| snap_err(e, ErrorVerb::Write))?;
        self.observe(SnapshotEvent::Installed, started.elapsed());
        if installed.last_log_id != meta.last_log_id {
            tracing::warn!(group = self.group, ?meta, ?installed, "installed snapshot differs from announced meta");
        }
        self.applied = self.state.applied().map_err(|e| sm_err(e, ErrorVerb::Read))?;
        self.publish_layout().map_err(|e| sm_err(e, ErrorVerb::Read))?;
        tracing::info!(group = self.group, last = ?self.applied.last_applied, "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, RaftStorageError<u64>> {
        current_snapshot(&self.snapdir).await
    }
}

async fn current_snapshot(dir: &SnapshotDir) -> Result<Option<Snapshot<TypeConfig>>, RaftStorageError<u64>> {
    let dir = dir.clone();
    let opened = tokio::task::spawn_blocking(move || dir.open_stream())
        .await
        .map_err(|e| {
            snap_err(StorageError::Corrupt { path: "snapshot".into(), reason: e.to_string() }, ErrorVerb::Read)
        })?
        .map_err(|e| snap_err(e, ErrorVerb::Read))?;
    Ok(opened.map(|(data, meta, _)| Snapshot { meta, snapshot: Box::new(data) }))
}

pub struct SnapshotBuilder {
    capture: Result<snapshot::Capture, StorageError>,
    snapdir: SnapshotDir,
    group: GroupId,
    observer: Option<Arc<SnapshotObserver>>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, RaftStorageError<u64>> {
        let cap = std::mem::replace(&mut self.capture, Err(StorageError::Closed))
            .map_err(|e| snap_err(e, ErrorVerb::Read))?;
        let id = match cap.applied.last_applied {
            Some(l) => {
                format!("{}-{}-{}-{}", l.leader_id.term, l.leader_id.node_id, l.index, uuid::Uuid::new_v4().simple())
            }
            None => format!("empty-{}", uuid::Uuid::new_v4().simple()),
        };
        let dir = self.snapdir.clone();
        let started = std::time::Instant::now();
        let meta = tokio::task::spawn_blocking(move || snapshot::build(cap, id, &dir))
            .await
            .map_err(|e| {
                snap_err(StorageError::Corrupt { path: "snapshot".into(), reason: e.to_string() }, ErrorVerb::Write)
            })?
            .map_err(|e| snap_err(e, ErrorVerb::Write))?;
        tracing::info!(group = self.group, last = ?meta.last_log_id, ms = started.elapsed().as_millis() as u64, "built snapshot");
        if let Some(f) = self.observer.as_ref().and_then(|o| o.get()) {
            f(SnapshotEvent::Built, started.elapsed());
        }
        current_snapshot(&self.snapdir).await?.ok_or_else(|| {
            snap_err(
                StorageError::Corrupt { path: "snapshot".into(), reason: "snapshot vanished".into() },
                ErrorVerb::Read,
            )
        })
    }
}
