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
    /// The learned host-score blend's fit (`None` in snapshots of versions
    /// before it: the bandit starts from its prior).
    #[serde(default)]
    host_model: Option<HostModel>,
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

    /// The ids of the decisions awaiting feedback, ascending.
    pub fn pending_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.pending.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids
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
        self.check_layout()?;
        let bad = |what: &str| {
            Err(Error::invalid(
                "bandit state",
                format!("{what} has counts that are negative, non-finite or above 2^53, or a non-finite time"),
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
        if self.host_model.is_some_and(|m| !m.is_valid()) {
            return Err(Error::invalid(
                "bandit state",
                "the learned host blend has non-finite or out-of-range values",
            ));
        }
        if let Some((id, _)) = self.pending.iter().find(|p| {
            p.1.host.as_ref().is_some_and(|h| {
                h.len() != p.1.items.len()
                    || h.iter().any(|x| !(x.0.is_finite() && x.1.is_finite()))
            })
        }) {
            return Err(Error::invalid(
                "bandit state",
                format!("pending decision {id} has host features that do not match its slate"),
            ));
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

impl BanditState {
    /// Checks the shape of the state: every list sorted by a unique key (as
    /// exported), journals one level deep, each user's items within the
    /// cap and unique, update ticks unique within a shard, and merged
    /// sequence numbers recorded consistently.
    fn check_layout(&self) -> Result<()> {
        let bad = |problem: String| Err(Error::invalid("bandit state", problem));
        fn increasing<K: Ord, V>(list: &[(K, V)]) -> bool {
            list.windows(2).all(|w| w[0].0 < w[1].0)
        }
        if !increasing(&self.items)
            || !increasing(&self.categories)
            || !increasing(&self.category_journal)
            || !increasing(&self.item_category)
            || !increasing(&self.user_journal)
            || !increasing(&self.applied)
            || !self.users.windows(2).all(|w| w[0].user < w[1].user)
        {
            return bad(
                "a list of items, categories, users or replicas is not sorted by unique ids".into(),
            );
        }
        if let Some((item, _)) = self
            .items
            .iter()
            .find(|(_, c)| c.journal.as_ref().is_some_and(|j| j.journal.is_some()))
        {
            return bad(format!("the journal of item {item} has a journal"));
        }
        let mut ticks = std::collections::HashSet::with_capacity(self.users.len());
        for u in &self.users {
            if u.items.len() > self.config.max_user_items || !increasing(&u.items) {
                return bad(format!(
                    "user {} has more than {} items, or an item twice",
                    u.user, self.config.max_user_items
                ));
            }
            if !ticks.insert((shard_of(u.user), u.tick)) {
                return bad(format!("user {} shares its update tick {}", u.user, u.tick));
            }
        }
        for (user, j) in &self.user_journal {
            let mut items: Vec<u64> = j.items.iter().map(|i| i.0).collect();
            items.sort_unstable();
            if items.windows(2).any(|w| w[0] == w[1]) {
                return bad(format!("the journal of user {user} lists an item twice"));
            }
        }
        if let Some((replica, _)) = self.applied.iter().find(|(_, a)| {
            a.above
                .first()
                .is_some_and(|&s| s <= a.through.saturating_add(1))
        }) {
            return bad(format!(
                "the merged deltas of replica {replica} are recorded inconsistently"
            ));
        }
        Ok(())
    }
}

/// Every count of an item's entry, named by where it is (for tests).
#[cfg(test)]
fn item_counts_mut<'a>(
    what: String,
    c: &'a mut ItemCounts,
    out: &mut Vec<(String, &'a mut Counts)>,
) {
    let ItemCounts {
        pooled,
        segments,
        journal,
    } = c;
    out.push((format!("{what} pooled"), pooled));
    for (s, counts) in segments.iter_mut() {
        out.push((format!("{what} segment {s}"), counts));
    }
    if let Some(j) = journal.as_deref_mut() {
        item_counts_mut(format!("{what} journal"), j, out);
    }
}

/// Every count of a user's changes, named by where it is (for tests).
#[cfg(test)]
fn journal_counts_mut<'a>(
    what: String,
    j: &'a mut UserJournal,
    out: &mut Vec<(String, &'a mut Counts)>,
) {
    out.push((format!("{what} evidence"), &mut j.evidence));
    for (item, counts) in j.items.iter_mut() {
        out.push((format!("{what} item {item}"), counts));
    }
}

/// Ways to damage a state, for the tests of its checks (here and in the
/// engine's snapshot tests).
#[cfg(test)]
impl BanditState {
    /// Every count in the state, named by where it is.
    pub(crate) fn counts_mut(&mut self) -> Vec<(String, &mut Counts)> {
        let mut out = Vec::new();
        let BanditState {
            items,
            categories,
            category_journal,
            users,
            user_journal,
            ..
        } = self;
        for (item, c) in items.iter_mut() {
            item_counts_mut(format!("item {item}"), c, &mut out);
        }
        for (c, counts) in categories.iter_mut() {
            out.push((format!("category {c}"), counts));
        }
        for (c, counts) in category_journal.iter_mut() {
            out.push((format!("category journal {c}"), counts));
        }
        for u in users.iter_mut() {
            out.push((format!("user {} evidence", u.user), &mut u.evidence));
            for (item, counts) in u.items.iter_mut() {
                out.push((format!("user {} item {item}", u.user), counts));
            }
        }
        for (user, j) in user_journal.iter_mut() {
            journal_counts_mut(format!("user journal {user}"), j, &mut out);
        }
        out
    }

    /// Lists the first item twice.
    pub(crate) fn duplicate_first_item(&mut self) {
        let first = self.items[0].clone();
        self.items.insert(0, first);
    }

    /// Gives the first two users (of one shard) the same update tick.
    pub(crate) fn share_a_tick(&mut self) {
        let shard = shard_of(self.users[0].user);
        let other = self
            .users
            .iter()
            .position(|u| u.user != self.users[0].user && shard_of(u.user) == shard)
            .expect("two users in one shard");
        self.users[other].tick = self.users[0].tick;
    }
}

/// Ways to damage a delta, for the tests of its checks.
#[cfg(test)]
impl Delta {
    /// Every count in the delta, named by where it is.
    pub(crate) fn counts_mut(&mut self) -> Vec<(String, &mut Counts)> {
        let mut out = Vec::new();
        let Delta {
            items,
            categories,
            users,
            ..
        } = self;
        for (item, c) in items.iter_mut() {
            item_counts_mut(format!("item {item}"), c, &mut out);
        }
        for (c, counts) in categories.iter_mut() {
            out.push((format!("category {c}"), counts));
        }
        for (user, j) in users.iter_mut() {
            journal_counts_mut(format!("user {user}"), j, &mut out);
        }
        out
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

    /// Reads [`to_bytes`](Self::to_bytes)'s output. Damaged bytes, and
    /// bytes whose checksum holds but whose values do not (counts negative,
    /// non-finite or above [`MAX_COUNT`](crate::limits::MAX_COUNT), lists
    /// out of order, sequence number 0, reserved header flags set), are
    /// [`Error::CorruptSnapshot`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Delta> {
        let path = std::path::Path::new("<delta>");
        let (_, payload) =
            crate::frame::decode(bytes, DELTA_MAGIC, DELTA_VERSION..=DELTA_VERSION, path)?;
        let delta: Delta = rmp_serde::from_slice(payload).map_err(|e| Error::CorruptSnapshot {
            path: path.to_path_buf(),
            problem: format!("cannot decode the delta: {e}"),
        })?;
        delta.validate().map_err(|e| Error::CorruptSnapshot {
            path: path.to_path_buf(),
            problem: format!("the delta holds invalid values: {e}"),
        })?;
        Ok(delta)
    }

    /// Checks what bytes could get wrong even with a valid checksum: the
    /// sequence number, every count (finite, non-negative, at most
    /// [`MAX_COUNT`](crate::limits::MAX_COUNT), finite times) and the
    /// layout (lists sorted by unique ids, no nested journal, no item twice
    /// in a user's changes).
    fn validate(&self) -> Result<()> {
        let bad = |problem: &str| Err(Error::invalid("delta", problem.to_string()));
        if self.seq == 0 {
            return bad("sequence number 0 (sequences start at 1)");
        }
        let ok = self.items.iter().all(|(_, c)| {
            c.pooled.is_valid()
                && c.segments.iter().all(|s| s.1.is_valid())
                && c.segments.windows(2).all(|w| w[0].0 < w[1].0)
                && c.journal.is_none()
        }) && self.categories.iter().all(|c| c.1.is_valid())
            && self
                .users
                .iter()
                .all(|(_, j)| j.evidence.is_valid() && j.items.iter().all(|i| i.1.is_valid()));
        if !ok {
            return bad("counts that are negative, non-finite or above 2^53, or a non-finite time");
        }
        let increasing = |ids: &mut dyn Iterator<Item = u64>| {
            let ids: Vec<u64> = ids.collect();
            ids.windows(2).all(|w| w[0] < w[1])
        };
        let users_ok = self.users.iter().all(|(_, j)| {
            let mut items: Vec<u64> = j.items.iter().map(|i| i.0).collect();
            items.sort_unstable();
            items.windows(2).all(|w| w[0] < w[1])
        });
        if !increasing(&mut self.items.iter().map(|e| e.0))
            || !increasing(&mut self.categories.iter().map(|e| u64::from(e.0)))
            || !increasing(&mut self.users.iter().map(|e| e.0))
            || !users_ok
        {
            return bad("an item, category or user is listed twice or out of order");
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
            host_model: Some(self.host_model()),
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
        if let Some(model) = state.host_model {
            bandit.set_host_model(model);
        }
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

    /// Values a count must never hold, whatever its checksum says.
    const BAD_COUNTS: [f64; 6] = [
        -1.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        1e308,
        1.2e16, // above 2^53
    ];

    /// A delta of replica 1 with counts at every level: pooled, segments,
    /// categories, users.
    fn rich_delta() -> Delta {
        let a = bandit(1);
        a.set_item_categories(&[(5, 1), (6, 2)]);
        a.record(
            Some(3),
            Some(9),
            &[(5, 1.0, 2.0), (6, 0.0, 1.0)],
            Some(10.0),
        )
        .expect("record");
        a.record(Some(4), Some(8), &[(7, 2.0, 0.5)], Some(11.0))
            .expect("record");
        let mut d = a.export_delta();
        assert!(d.counts_mut().len() >= 12, "{d:?}");
        d
    }

    #[test]
    fn deltas_with_invalid_values_are_refused_and_change_nothing() {
        let good = rich_delta();
        let b = bandit(2);
        b.record(Some(3), Some(9), &[(5, 3.0, 4.0)], Some(5.0))
            .expect("record");
        let before = b.export_state();
        let mut cases: Vec<(String, Delta)> = Vec::new();
        for i in 0..good.clone().counts_mut().len() {
            for value in BAD_COUNTS {
                for field in ["successes", "failures"] {
                    let mut d = good.clone();
                    let (place, c) = d.counts_mut().swap_remove(i);
                    if field == "successes" {
                        c.successes = value;
                    } else {
                        c.failures = value;
                    }
                    cases.push((format!("{place} {field} = {value}"), d));
                }
            }
            for value in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
                let mut d = good.clone();
                let (place, c) = d.counts_mut().swap_remove(i);
                c.time = value;
                cases.push((format!("{place} time = {value}"), d));
            }
        }
        let mut d = good.clone();
        d.seq = 0;
        cases.push(("sequence number 0".into(), d));
        let mut d = good.clone();
        let first = d.items[0].clone();
        d.items.push(first);
        cases.push(("an item twice".into(), d));
        let mut d = good.clone();
        d.users.reverse();
        cases.push(("users out of order".into(), d));
        let mut d = good.clone();
        d.items[0].1.journal = Some(Box::new(d.items[0].1.clone()));
        cases.push(("a nested journal".into(), d));
        let mut d = good.clone();
        let item = d.users[0].1.items[0];
        d.users[0].1.items.push(item);
        cases.push(("a user's item twice".into(), d));

        for (what, bad) in &cases {
            // Framed with a valid checksum: the bytes are refused as corrupt.
            let bytes = bad.to_bytes().expect("serialize");
            match Delta::from_bytes(&bytes) {
                Err(Error::CorruptSnapshot { problem, .. }) => {
                    assert!(problem.contains("invalid values"), "{what}: {problem}")
                }
                other => panic!("{what}: expected a corrupt delta, got {other:?}"),
            }
            // Handed over as a value: refused, nothing changes.
            assert!(b.merge_delta(bad).is_err(), "{what}");
            assert_eq!(b.export_state(), before, "{what}");
            assert_eq!(b.stats().merged_deltas, 0);
        }
        // Reserved header flags.
        let payload = rmp_serde::to_vec(&good).expect("serialize");
        let flagged = crate::frame::encode_with_flags(DELTA_MAGIC, DELTA_VERSION, 1, &payload);
        assert!(matches!(
            Delta::from_bytes(&flagged),
            Err(Error::CorruptSnapshot { .. })
        ));
        // The intact delta, re-framed the same way, merges.
        let back = Delta::from_bytes(&good.to_bytes().expect("serialize")).expect("valid");
        assert!(b.merge_delta(&back).expect("merge"));
    }

    #[test]
    fn counts_saturate_so_every_state_reloads() {
        let mut huge = rich_delta();
        for (_, c) in huge.counts_mut() {
            c.successes = limits::MAX_COUNT;
            c.failures = limits::MAX_COUNT;
        }
        let b = bandit(2);
        for seq in 1..=3 {
            huge.seq = seq;
            assert!(b.merge_delta(&huge).expect("merge"));
        }
        assert_eq!(b.pooled_counts(5).successes, limits::MAX_COUNT);
        b.record(Some(3), Some(9), &[(5, limits::MAX_COUNT, 1.0)], Some(20.0))
            .expect("record");
        assert_eq!(b.pooled_counts(5).successes, limits::MAX_COUNT);
        let state = b.export_state();
        SlateBandit::from_state(state).expect("what a bandit holds reloads");
        // Observations beyond the bound, or at a non-finite time, are refused.
        for (s, now) in [
            (1e308, Some(1.0)),
            (f64::INFINITY, None),
            (1.0, Some(f64::INFINITY)),
        ] {
            assert!(
                b.record(None, None, &[(5, s, 0.0)], now).is_err(),
                "{s} {now:?}"
            );
        }
    }

    #[test]
    fn states_with_invalid_values_are_refused() {
        let b = bandit(1);
        b.set_item_categories(&[(5, 1)]);
        for user in 0..200 {
            b.record(
                Some(3),
                Some(user),
                &[(5, 1.0, 2.0), (6, 0.0, 1.0)],
                Some(1.0),
            )
            .expect("record");
        }
        let good = b.export_state();
        SlateBandit::from_state(good.clone()).expect("valid");
        let places = good.clone().counts_mut().len();
        for i in (0..places).step_by(7) {
            for value in BAD_COUNTS {
                let mut s = good.clone();
                let (place, c) = s.counts_mut().swap_remove(i);
                c.failures = value;
                assert!(SlateBandit::from_state(s).is_err(), "{place} = {value}");
            }
        }
        let mut s = good.clone();
        s.duplicate_first_item();
        assert!(SlateBandit::from_state(s).is_err(), "an item twice");
        let mut s = good.clone();
        s.share_a_tick();
        assert!(SlateBandit::from_state(s).is_err(), "two users, one tick");
    }
}
