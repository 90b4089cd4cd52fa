//! The bandit's learning as plain data: [`BanditState`] for snapshots and
//! [`Delta`] for replicas that merge each other's learning.
//!
//! # The replica protocol
//!
//! Hosts that run several replicas behind a load balancer give each a
//! distinct [`BanditConfig::replica_id`] and turn on
//! [`BanditConfig::record_deltas`]. Every replica then, periodically:
//!
//! 1. calls [`SlateBandit::export_delta`]: it returns the count changes since
//!    the previous export, numbered `(replica_id, seq)` with `seq` = 1, 2, …,
//!    and starts a new journal (this is the checkpoint);
//! 2. keeps the delta's bytes ([`Delta::to_bytes`]) in an outbox, saves its
//!    snapshot if it persists state (so the sequence number survives a
//!    restart), then publishes the bytes on whatever transport the host runs
//!    (a log, a broker, a shared folder) and drops them from the outbox. A
//!    replica that dies between the save and the publish publishes its
//!    outbox on restart; one that dies before the save restarts from the
//!    previous snapshot, whose journal still holds those changes, and
//!    exports them again under the same sequence number (never published, so
//!    no replica has merged it);
//! 3. passes every delta it receives to [`SlateBandit::merge_delta`], in any
//!    order, duplicates included.
//!
//! Merging is **commutative** and **associative** (counts are sums; decayed
//! counts are brought to the later time before summing) and **idempotent**:
//! each replica remembers which `(replica, seq)` it has merged and ignores
//! repeats and its own deltas. So once every replica has merged every other
//! replica's deltas, all hold the counts of one engine that saw all events
//! (up to floating-point rounding of the sums, about 1e-15 relative).
//!
//! What is exchanged: pooled, per-segment and per-category counts, and
//! per-user counts (so a user served by several replicas is known to all).
//! Not exchanged: pending decisions (feedback goes to the replica that made
//! the decision, which the host's routing ensures) and item categories
//! (configuration the host gives every replica). Segment ids must mean the
//! same segments on every replica: rebuild segments in one place and
//! distribute them, and export a delta before migrating.

use std::collections::BTreeSet;

use super::*;

/// The delta exchange's bookkeeping inside a bandit.
#[derive(Debug, Default)]
pub(super) struct Replication {
    /// Sequence number of the last exported delta.
    last_seq: AtomicU64,
    /// Feedback events since the last export.
    pub(super) journal_events: AtomicU64,
    /// Deltas merged so far, per replica.
    applied: Mutex<HashMap<u64, Applied>>,
}

/// Which sequence numbers of one replica have been merged: all up to
/// `through`, plus the ones in `above` (deltas can arrive out of order).
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Applied {
    through: u64,
    above: BTreeSet<u64>,
}

impl Applied {
    fn contains(&self, seq: u64) -> bool {
        seq <= self.through || self.above.contains(&seq)
    }

    fn insert(&mut self, seq: u64) {
        if seq == self.through + 1 {
            self.through = seq;
            while self.above.remove(&(self.through + 1)) {
                self.through += 1;
            }
        } else {
            self.above.insert(seq);
        }
    }
}

/// A user's own state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct UserRecord {
    user: u64,
    tick: u64,
    evidence: Counts,
    items: Vec<(u64, Counts)>,
}

/// Everything a [`SlateBandit`] holds, as serializable data (see
/// [`SlateBandit::export_state`] and [`SlateBandit::from_state`]). Entries are
/// sorted by id, so equal bandits give equal states.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BanditState {
    config: BanditConfig,
    items: Vec<(u64, ItemCounts)>,
    categories: Vec<(u32, Counts)>,
    category_journal: Vec<(u32, Counts)>,
    item_category: Vec<(u64, u32)>,
    users: Vec<UserRecord>,
    user_journal: Vec<(u64, UserJournal)>,
    /// Open decisions, oldest first within each shard.
    pending: Vec<(u64, Pending)>,
    /// The sequence part of the last decision id issued. (Snapshots of
    /// older versions hold their next counter id here, a small number the
    /// clock floor of the ids is far above.)
    last_sequence: u64,
    /// Its counters; `stats.decisions` is also the ordinal that seeds the
    /// next decision's draws.
    stats: Stats,
    last_seq: u64,
    journal_events: u64,
    applied: Vec<(u64, Applied)>,
}

impl BanditState {
    /// The configuration.
    pub fn config(&self) -> &BanditConfig {
        &self.config
    }

    /// Items with counts.
    pub fn items(&self) -> usize {
        self.items.len()
    }

    /// Users with their own state.
    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// Decisions awaiting feedback.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The counters at the time of the export.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The state with its counters zeroed (tests compare states that must
    /// differ only in counters).
    #[cfg(test)]
    pub(super) fn without_stats(mut self) -> BanditState {
        self.stats = Stats::default();
        self
    }

    /// Checks what a file could get wrong even with a valid checksum.
    fn validate(&self) -> Result<()> {
        self.config.validate()?;
        let bad = |what: &str| {
            Err(Error::invalid(
                "bandit state",
                format!("{what} has negative or non-finite counts"),
            ))
        };
        let item_ok = |c: &ItemCounts| {
            c.pooled.is_valid()
                && c.segments.iter().all(|s| s.1.is_valid())
                && c.segments.windows(2).all(|w| w[0].0 < w[1].0)
        };
        for (item, c) in &self.items {
            if !item_ok(c) || c.journal.as_deref().is_some_and(|j| !item_ok(j)) {
                return bad(&format!("item {item}"));
            }
        }
        for (c, counts) in self.categories.iter().chain(&self.category_journal) {
            if !counts.is_valid() {
                return bad(&format!("category {c}"));
            }
        }
        for u in &self.users {
            if !u.evidence.is_valid() || u.items.iter().any(|i| !i.1.is_valid()) {
                return bad(&format!("user {}", u.user));
            }
        }
        for (user, j) in &self.user_journal {
            if !j.evidence.is_valid() || j.items.iter().any(|i| !i.1.is_valid()) {
                return bad(&format!("the journal of user {user}"));
            }
        }
        if let Some((id, _)) = self.pending.iter().find(|p| p.1.items.is_empty()) {
            return Err(Error::invalid(
                "bandit state",
                format!("pending decision {id} has no items"),
            ));
        }
        Ok(())
    }
}

/// Count changes one replica learned between two exports; see the module
/// docs for the protocol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    /// The replica that exported it.
    pub replica: u64,
    /// Its sequence number at that replica (1, 2, …).
    pub seq: u64,
    /// Feedback events it carries.
    pub events: u64,
    items: Vec<(u64, ItemCounts)>,
    categories: Vec<(u32, Counts)>,
    users: Vec<(u64, UserJournal)>,
}

const DELTA_MAGIC: &[u8; 8] = b"GWDELTA\x1a";
const DELTA_VERSION: u32 = 1;

impl Delta {
    /// True if it carries no counts.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty() && self.categories.is_empty() && self.users.is_empty()
    }

    /// The bytes to publish: framed like a snapshot (magic, version,
    /// checksum), so a damaged message is refused, not merged.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let payload = rmp_serde::to_vec(self)
            .map_err(|e| Error::invalid("delta", format!("cannot serialize: {e}")))?;
        Ok(crate::frame::encode(DELTA_MAGIC, DELTA_VERSION, &payload))
    }

    /// Reads [`to_bytes`](Self::to_bytes)'s output.
    pub fn from_bytes(bytes: &[u8]) -> Result<Delta> {
        let path = std::path::Path::new("<delta>");
        let (_, payload) =
            crate::frame::decode(bytes, DELTA_MAGIC, DELTA_VERSION..=DELTA_VERSION, path)?;
        let delta: Delta = rmp_serde::from_slice(payload).map_err(|e| Error::CorruptSnapshot {
            path: path.to_path_buf(),
            problem: format!("cannot decode the delta: {e}"),
        })?;
        delta.validate()?;
        Ok(delta)
    }

    fn validate(&self) -> Result<()> {
        let ok = self
            .items
            .iter()
            .all(|(_, c)| c.pooled.is_valid() && c.segments.iter().all(|s| s.1.is_valid()))
            && self.categories.iter().all(|c| c.1.is_valid())
            && self
                .users
                .iter()
                .all(|(_, j)| j.evidence.is_valid() && j.items.iter().all(|i| i.1.is_valid()));
        if self.seq == 0 || !ok {
            return Err(Error::invalid(
                "delta",
                "sequence number 0, or negative or non-finite counts",
            ));
        }
        Ok(())
    }
}

fn sorted<K: Ord + Copy, V>(mut v: Vec<(K, V)>) -> Vec<(K, V)> {
    v.sort_unstable_by_key(|e| e.0);
    v
}

impl SlateBandit {
    /// Everything the bandit holds, for a snapshot. Takes each shard's lock
    /// in turn: for a consistent cut, hold feedback back while it runs (the
    /// [`Engine`](crate::Engine) does).
    pub fn export_state(&self) -> BanditState {
        let mut items = Vec::new();
        for shard in &self.items {
            items.extend(shard.read().iter().map(|(&k, v)| (k, v.clone())));
        }
        let mut users = Vec::new();
        let mut user_journal = Vec::new();
        for shard in &self.users {
            let shard = shard.read();
            users.extend(shard.users.iter().map(|(&user, u)| UserRecord {
                user,
                tick: u.tick,
                evidence: u.evidence,
                items: sorted(u.items.iter().map(|(&k, &v)| (k, v)).collect()),
            }));
            user_journal.extend(shard.journal.iter().map(|(&k, v)| (k, v.clone())));
        }
        users.sort_unstable_by_key(|u| u.user);
        let mut pending = Vec::new();
        for shard in &self.pending {
            let shard = shard.lock();
            pending.extend(
                shard
                    .order
                    .iter()
                    .filter_map(|id| shard.open.get(id).map(|p| (*id, p.clone()))),
            );
        }
        BanditState {
            config: self.config.clone(),
            items: sorted(items),
            categories: sorted(
                self.categories
                    .read()
                    .iter()
                    .map(|(&k, &v)| (k, v))
                    .collect(),
            ),
            category_journal: sorted(
                self.category_journal
                    .lock()
                    .iter()
                    .map(|(&k, &v)| (k, v))
                    .collect(),
            ),
            item_category: sorted(
                self.item_category
                    .read()
                    .iter()
                    .map(|(&k, &v)| (k, v))
                    .collect(),
            ),
            users,
            user_journal: sorted(user_journal),
            pending,
            last_sequence: self.last_sequence.load(Ordering::Relaxed),
            stats: self.stats(),
            last_seq: self.replication.last_seq.load(Ordering::Relaxed),
            journal_events: self.replication.journal_events.load(Ordering::Relaxed),
            applied: sorted(
                self.replication
                    .applied
                    .lock()
                    .iter()
                    .map(|(&k, v)| (k, v.clone()))
                    .collect(),
            ),
        }
    }

    /// A bandit holding `state` (from [`export_state`](Self::export_state)),
    /// after checking it (counts finite and non-negative, configuration valid).
    pub fn from_state(state: BanditState) -> Result<SlateBandit> {
        state.validate()?;
        if state.last_sequence > MAX_SEQUENCE {
            return Err(Error::invalid(
                "bandit state",
                format!(
                    "decision sequence {} is beyond the largest decision id",
                    state.last_sequence
                ),
            ));
        }
        let bandit = SlateBandit::new(state.config)?;
        for (item, counts) in state.items {
            bandit.items[shard_of(item)].write().insert(item, counts);
        }
        bandit.categories.write().extend(state.categories);
        bandit
            .category_journal
            .lock()
            .extend(state.category_journal);
        bandit.item_category.write().extend(state.item_category);
        for u in state.users {
            let mut shard = bandit.users[shard_of(u.user)].write();
            shard.tick = shard.tick.max(u.tick);
            shard.order.insert(u.tick, u.user);
            shard.users.insert(
                u.user,
                UserState {
                    items: u.items.into_iter().collect(),
                    evidence: u.evidence,
                    tick: u.tick,
                },
            );
        }
        for (user, j) in state.user_journal {
            bandit.users[shard_of(user)].write().journal.insert(user, j);
        }
        for (id, p) in state.pending {
            let mut shard = bandit.pending[shard_of(id)].lock();
            shard.open.insert(id, p);
            shard.order.push_back(id);
        }
        bandit
            .last_sequence
            .store(state.last_sequence, Ordering::Relaxed);
        let c = &bandit.counters;
        let s = state.stats;
        for (counter, value) in [
            (&c.decisions, s.decisions),
            (&c.applied, s.feedback_applied),
            (&c.unknown, s.rejected_unknown_decision),
            (&c.bad_position, s.rejected_bad_position),
            (&c.evicted_decisions, s.evicted_decisions),
            (&c.evicted_users, s.evicted_users),
            (&c.clicks, s.clicks),
            (&c.impressions, s.impressions),
            (&c.merged_deltas, s.merged_deltas),
            (&c.merged_feedback, s.merged_feedback),
        ] {
            counter.store(value, Ordering::Relaxed);
        }
        let r = &bandit.replication;
        r.last_seq.store(state.last_seq, Ordering::Relaxed);
        r.journal_events
            .store(state.journal_events, Ordering::Relaxed);
        r.applied.lock().extend(state.applied);
        Ok(bandit)
    }

    /// The count changes since the previous export, as the next numbered
    /// delta of this replica (see the module docs of the protocol). Needs
    /// [`BanditConfig::record_deltas`]; without it the delta is empty.
    pub fn export_delta(&self) -> Delta {
        let mut items = Vec::new();
        for shard in &self.items {
            for (&item, entry) in shard.write().iter_mut() {
                if let Some(j) = entry.journal.take() {
                    items.push((item, *j));
                }
            }
        }
        let categories = std::mem::take(&mut *self.category_journal.lock());
        let mut users = Vec::new();
        for shard in &self.users {
            users.extend(std::mem::take(&mut shard.write().journal));
        }
        let r = &self.replication;
        Delta {
            replica: self.config.replica_id,
            seq: r.last_seq.fetch_add(1, Ordering::Relaxed) + 1,
            events: r.journal_events.swap(0, Ordering::Relaxed),
            items: sorted(items),
            categories: sorted(categories.into_iter().collect()),
            users: sorted(users),
        }
    }

    /// Merges another replica's delta. Returns `Ok(false)` (and changes
    /// nothing) for this replica's own deltas and for deltas already merged;
    /// merged counts are not journaled again (each replica exports only what
    /// it learned itself).
    pub fn merge_delta(&self, delta: &Delta) -> Result<bool> {
        delta.validate()?;
        if delta.replica == self.config.replica_id {
            return Ok(false);
        }
        // Held for the whole merge, so one delta is never merged twice by
        // two threads at once.
        let mut applied = self.replication.applied.lock();
        let seen = applied.entry(delta.replica).or_default();
        if seen.contains(delta.seq) {
            return Ok(false);
        }
        let h = self.config.half_life;
        for (item, c) in &delta.items {
            let mut shard = self.items[shard_of(*item)].write();
            let entry = shard.entry(*item).or_default();
            entry.pooled.merge(&c.pooled, h);
            for (s, counts) in &c.segments {
                entry.segment_mut(*s).merge(counts, h);
            }
        }
        if !delta.categories.is_empty() {
            let mut categories = self.categories.write();
            for (c, counts) in &delta.categories {
                categories.entry(*c).or_default().merge(counts, h);
            }
        }
        for (user, j) in &delta.users {
            let mut shard = self.users[shard_of(*user)].write();
            let state = self.touch_user(&mut shard, *user);
            state.evidence.merge(&j.evidence, h);
            for (item, counts) in &j.items {
                state
                    .item_mut(*item, self.config.max_user_items)
                    .merge(counts, h);
            }
        }
        seen.insert(delta.seq);
        self.counters.merged_deltas.fetch_add(1, Ordering::Relaxed);
        self.counters
            .merged_feedback
            .fetch_add(delta.events, Ordering::Relaxed);
        Ok(true)
    }

    /// Forgets a user's own state (e.g. when the host deletes the user).
    /// Segment and pooled counts keep what the user contributed: they are
    /// aggregates over many users. Returns whether the user had state.
    pub fn forget_user(&self, user: u64) -> bool {
        let mut shard = self.users[shard_of(user)].write();
        shard.journal.remove(&user);
        match shard.users.remove(&user) {
            Some(state) => {
                shard.order.remove(&state.tick);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bandit(replica: u64) -> SlateBandit {
        SlateBandit::new(BanditConfig {
            record_deltas: true,
            replica_id: replica,
            ..BanditConfig::default()
        })
        .expect("valid config")
    }

    #[test]
    fn applied_tracks_out_of_order_sequences() {
        let mut a = Applied::default();
        for s in [3, 1, 5, 2] {
            a.insert(s);
        }
        assert_eq!(a.through, 3);
        assert!(a.contains(5) && !a.contains(4) && !a.contains(6));
        a.insert(4);
        assert_eq!((a.through, a.above.len()), (5, 0));
    }

    #[test]
    fn state_round_trip_keeps_everything() {
        let b = bandit(1);
        b.set_item_categories(&[(10, 1), (11, 1)]);
        let d = b
            .decide(&Request::new(Some(7), Some(2), &[10, 11, 12, 13], 3))
            .expect("decide");
        b.feedback(&Feedback {
            decision: d.id,
            clicks: &[1],
            visible: None,
            now: None,
        })
        .expect("feedback");
        let open = b
            .decide(&Request::new(Some(8), Some(2), &[10, 11, 12], 2))
            .expect("decide");
        let state = b.export_state();
        let bytes = rmp_serde::to_vec(&state).expect("serialize");
        let back: BanditState = rmp_serde::from_slice(&bytes).expect("deserialize");
        let restored = SlateBandit::from_state(back).expect("valid state");
        assert_eq!(restored.export_state(), state);
        // The open decision still takes its feedback after the restore, once.
        let fb = Feedback {
            decision: open.id,
            clicks: &[0],
            visible: None,
            now: None,
        };
        restored.feedback(&fb).expect("pending decision survives");
        assert!(restored.feedback(&fb).is_err());
        // New decision ids continue after the old ones.
        let next = restored
            .decide(&Request::new(None, None, &[10], 1))
            .expect("decide");
        assert!(next.id > open.id);
    }

    #[test]
    fn from_state_refuses_negative_counts() {
        let b = bandit(1);
        b.record(Some(1), None, &[(5, 1.0, 2.0)], None)
            .expect("record");
        let mut state = b.export_state();
        state.items[0].1.pooled.successes = -1.0;
        assert!(SlateBandit::from_state(state).is_err());
    }

    #[test]
    fn deltas_merge_once_and_never_echo() {
        let a = bandit(1);
        let b = bandit(2);
        a.record(Some(3), Some(9), &[(5, 1.0, 2.0)], None)
            .expect("record");
        let d = a.export_delta();
        assert_eq!((d.replica, d.seq), (1, 1));
        let d = Delta::from_bytes(&d.to_bytes().expect("bytes")).expect("decode");
        assert!(b.merge_delta(&d).expect("merge"));
        assert!(!b.merge_delta(&d).expect("duplicate"), "idempotent");
        assert!(!a.merge_delta(&d).expect("own"), "own deltas are ignored");
        assert_eq!(b.pooled_counts(5), a.pooled_counts(5));
        assert_eq!(b.segment_counts(3, 5), a.segment_counts(3, 5));
        assert_eq!(b.user_counts(9, 5), a.user_counts(9, 5));
        // Merged counts are not re-exported by the receiver.
        assert!(b.export_delta().is_empty());
        // The journal restarted at the export.
        assert!(a.export_delta().is_empty());
    }
}
