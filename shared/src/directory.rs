//! The diff: stored directory + snapshot -> changes. Pure, and covered by property tests.
//!
//! A member is identified by its SCIM id. For each id:
//! - in the snapshot, not stored (or stored as removed): `added`;
//! - in both, `active` went true -> false: `deactivated`; false -> true: `reactivated`;
//! - in both, only other fields changed: `updated`;
//! - stored and not removed, absent from the snapshot: `removed`, but only when the caller
//!   says removals may be inferred (a complete and consistent snapshot, see
//!   `scim::paging`). One change per member per sync; `changed_fields` lists every field that
//!   differs, so a rename that comes with a suspension is one `deactivated` event naming both.

use crate::scim::ScimUser;
use serde::Serialize;
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUser {
    pub user: ScimUser,
    /// Set once the member disappeared from the bridge (confirmed).
    pub removed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Added,
    Updated,
    Deactivated,
    Reactivated,
    Removed,
}

impl ChangeKind {
    /// The event type and AMQP routing key: a contract with Viio's other services.
    pub fn event_type(self) -> &'static str {
        match self {
            ChangeKind::Added => "user.added",
            ChangeKind::Updated => "user.updated",
            ChangeKind::Deactivated => "user.deactivated",
            ChangeKind::Reactivated => "user.reactivated",
            ChangeKind::Removed => "user.removed",
        }
    }

    pub const ALL: [ChangeKind; 5] = [
        ChangeKind::Added,
        ChangeKind::Updated,
        ChangeKind::Deactivated,
        ChangeKind::Reactivated,
        ChangeKind::Removed,
    ];
}

/// One change, borrowing the members from the snapshot and the stored directory: a sync of
/// 100,000 members must not hold a second copy of each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change<'a> {
    pub kind: ChangeKind,
    /// The member's state after the change (for `removed`: as last stored).
    pub user: &'a ScimUser,
    /// The stored state before the change; `None` for a member never seen before.
    pub previous: Option<&'a ScimUser>,
    pub changed_fields: Vec<&'static str>,
}

/// Names of the fields that differ between two states of one member.
pub fn changed_fields(a: &ScimUser, b: &ScimUser) -> Vec<&'static str> {
    let mut out = Vec::new();
    if a.user_name != b.user_name {
        out.push("user_name");
    }
    if a.email != b.email {
        out.push("email");
    }
    if a.display_name != b.display_name {
        out.push("display_name");
    }
    if a.given_name != b.given_name {
        out.push("given_name");
    }
    if a.family_name != b.family_name {
        out.push("family_name");
    }
    if a.active != b.active {
        out.push("active");
    }
    out
}

/// Computes the changes from `stored` to `current`. The result is sorted by SCIM id, so it
/// does not depend on the order of either input.
pub fn diff<'a>(
    stored: &'a [StoredUser],
    current: &'a [ScimUser],
    infer_removals: bool,
) -> Vec<Change<'a>> {
    let by_id: HashMap<&str, &StoredUser> =
        stored.iter().map(|s| (s.user.id.as_str(), s)).collect();
    let mut seen: HashMap<&str, ()> = HashMap::with_capacity(current.len());
    let mut changes = Vec::new();
    for user in current {
        // A snapshot holds each id once; should a caller pass duplicates, the first wins.
        if seen.insert(user.id.as_str(), ()).is_some() {
            continue;
        }
        match by_id.get(user.id.as_str()) {
            None => changes.push(Change {
                kind: ChangeKind::Added,
                user,
                previous: None,
                changed_fields: Vec::new(),
            }),
            Some(old) if old.removed => changes.push(Change {
                kind: ChangeKind::Added,
                user,
                previous: Some(&old.user),
                changed_fields: changed_fields(&old.user, user),
            }),
            Some(old) => {
                let fields = changed_fields(&old.user, user);
                if fields.is_empty() {
                    continue;
                }
                let kind = match (old.user.active, user.active) {
                    (true, false) => ChangeKind::Deactivated,
                    (false, true) => ChangeKind::Reactivated,
                    _ => ChangeKind::Updated,
                };
                changes.push(Change {
                    kind,
                    user,
                    previous: Some(&old.user),
                    changed_fields: fields,
                });
            }
        }
    }
    if infer_removals {
        for old in stored {
            if !old.removed && !seen.contains_key(old.user.id.as_str()) {
                changes.push(Change {
                    kind: ChangeKind::Removed,
                    user: &old.user,
                    previous: Some(&old.user),
                    changed_fields: Vec::new(),
                });
            }
        }
    }
    changes.sort_unstable_by(|a, b| a.user.id.cmp(&b.user.id));
    changes
}

/// Applies changes to a stored directory: what the database does, as a pure function (the
/// property tests check the diff against it).
pub fn apply(stored: &[StoredUser], changes: &[Change]) -> Vec<StoredUser> {
    let mut map: HashMap<String, StoredUser> = stored
        .iter()
        .map(|s| (s.user.id.clone(), s.clone()))
        .collect();
    for c in changes {
        match c.kind {
            ChangeKind::Removed => {
                if let Some(s) = map.get_mut(&c.user.id) {
                    s.removed = true;
                }
            }
            _ => {
                map.insert(
                    c.user.id.clone(),
                    StoredUser {
                        user: c.user.clone(),
                        removed: false,
                    },
                );
            }
        }
    }
    let mut out: Vec<StoredUser> = map.into_values().collect();
    out.sort_unstable_by(|a, b| a.user.id.cmp(&b.user.id));
    out
}

/// A digest of a snapshot's members (sorted by id, as a `Snapshot` is): equal digests mean
/// equal directories, so a sync can tell "nothing changed" without loading the stored one.
pub fn digest(users: &[ScimUser]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut field = |v: Option<&str>| match v {
        // Length-prefixed, with None distinct from Some(""), so no two directories collide by
        // shifting text between fields.
        Some(s) => {
            h.update([1u8]);
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
        None => h.update([0u8]),
    };
    for u in users {
        field(Some(&u.id));
        field(u.user_name.as_deref());
        field(u.email.as_deref());
        field(u.display_name.as_deref());
        field(u.given_name.as_deref());
        field(u.family_name.as_deref());
        field(Some(if u.active { "1" } else { "0" }));
    }
    h.finalize().into()
}

/// When a sync may remove members.
#[derive(Debug, Clone, Copy)]
pub struct RemovalPolicy {
    /// A run removing more than this many members *and* more than `max_ratio` of the directory
    /// is a mass removal: held for an operator.
    pub max_count: usize,
    pub max_ratio: f64,
    /// `GET /Users/{id}` confirmations per run; candidates beyond it wait for the next run.
    pub max_checks: usize,
}

impl Default for RemovalPolicy {
    fn default() -> Self {
        Self {
            max_count: 10,
            max_ratio: 0.10,
            max_checks: 100,
        }
    }
}

impl RemovalPolicy {
    /// Pure: is removing `candidates` of `directory_size` present members a mass removal?
    pub fn is_mass_removal(&self, candidates: usize, directory_size: usize) -> bool {
        candidates > self.max_count && (candidates as f64) > self.max_ratio * directory_size as f64
    }
}

/// Counts per kind, for `sync.completed` and the sync-run row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ChangeCounts {
    pub added: u64,
    pub updated: u64,
    pub deactivated: u64,
    pub reactivated: u64,
    pub removed: u64,
}

impl ChangeCounts {
    pub fn of(changes: &[Change]) -> Self {
        let mut c = Self::default();
        for ch in changes {
            match ch.kind {
                ChangeKind::Added => c.added += 1,
                ChangeKind::Updated => c.updated += 1,
                ChangeKind::Deactivated => c.deactivated += 1,
                ChangeKind::Reactivated => c.reactivated += 1,
                ChangeKind::Removed => c.removed += 1,
            }
        }
        c
    }

    pub fn total(&self) -> u64 {
        self.added + self.updated + self.deactivated + self.reactivated + self.removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn user(id: &str, name: &str, active: bool) -> ScimUser {
        ScimUser {
            id: id.into(),
            user_name: Some(format!("{name}@x.io")),
            email: Some(format!("{name}@x.io")),
            display_name: Some(name.into()),
            given_name: Some(name.into()),
            family_name: None,
            active,
        }
    }

    fn stored(users: &[ScimUser]) -> Vec<StoredUser> {
        users
            .iter()
            .map(|u| StoredUser {
                user: u.clone(),
                removed: false,
            })
            .collect()
    }

    #[test]
    fn each_kind_of_change() {
        let old = stored(&[
            user("a", "ann", true),
            user("b", "bob", true),
            user("c", "cy", false),
            user("d", "dee", true),
        ]);
        let new = vec![
            user("a", "ann", false),
            user("b", "bobby", true),
            user("c", "cy", true),
            user("e", "eve", true),
        ];
        let changes = diff(&old, &new, true);
        let kinds: Vec<_> = changes
            .iter()
            .map(|c| (c.user.id.as_str(), c.kind))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("a", ChangeKind::Deactivated),
                ("b", ChangeKind::Updated),
                ("c", ChangeKind::Reactivated),
                ("d", ChangeKind::Removed),
                ("e", ChangeKind::Added)
            ]
        );
        assert_eq!(
            changes[1].changed_fields,
            vec!["user_name", "email", "display_name", "given_name"]
        );
        assert_eq!(changes[0].changed_fields, vec!["active"]);
        assert_eq!(changes[4].previous, None);
        assert_eq!(changes[3].previous.as_ref().unwrap().id, "d");
    }

    #[test]
    fn removals_only_when_allowed() {
        let old = stored(&[user("a", "ann", true), user("b", "bob", true)]);
        let ann = [user("a", "ann", true)];
        let changes = diff(&old, &ann, false);
        assert!(changes.is_empty());
        let changes = diff(&old, &ann, true);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].kind, ChangeKind::Removed);
    }

    #[test]
    fn digest_tells_directories_apart() {
        let a = vec![user("a", "ann", true), user("b", "bob", true)];
        let mut b = a.clone();
        assert_eq!(digest(&a), digest(&b));
        b[1].active = false;
        assert_ne!(digest(&a), digest(&b));
        let mut c = a.clone();
        c[0].family_name = Some(String::new());
        assert_ne!(digest(&a), digest(&c), "None and empty differ");
        assert_ne!(digest(&a), digest(&a[..1]));
    }

    #[test]
    fn mass_removal_threshold() {
        let p = RemovalPolicy::default();
        assert!(!p.is_mass_removal(10, 20), "10 is not more than 10");
        assert!(p.is_mass_removal(11, 100));
        assert!(
            !p.is_mass_removal(11, 110),
            "exactly 10% is not more than 10%"
        );
        assert!(!p.is_mass_removal(50, 1000), "5% of a large directory");
        assert!(p.is_mass_removal(101, 1000));
    }

    #[test]
    fn removed_member_coming_back_is_added_again_and_removed_only_once() {
        let mut old = stored(&[user("a", "ann", true)]);
        old[0].removed = true;
        let ann = [user("a", "ann", true)];
        let changes = diff(&old, &ann, true);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].kind, ChangeKind::Added);
        assert!(changes[0].previous.is_some());
        assert!(
            diff(&old, &[], true).is_empty(),
            "already removed: nothing to say"
        );
    }

    fn arb_user() -> impl Strategy<Value = ScimUser> {
        (
            0u8..40,
            prop::option::of("[a-c]{1,2}"),
            prop::option::of("[a-c]{1,2}"),
            any::<bool>(),
        )
            .prop_map(|(id, name, mail, active)| ScimUser {
                id: format!("ID{id:02}"),
                user_name: mail.clone(),
                email: mail,
                display_name: name.clone(),
                given_name: name,
                family_name: None,
                active,
            })
    }

    fn arb_dir() -> impl Strategy<Value = Vec<ScimUser>> {
        prop::collection::vec(arb_user(), 0..30).prop_map(|mut v| {
            v.sort_by(|a, b| a.id.cmp(&b.id));
            v.dedup_by(|a, b| a.id == b.id);
            v
        })
    }

    fn arb_stored() -> impl Strategy<Value = Vec<StoredUser>> {
        (arb_dir(), prop::collection::vec(any::<bool>(), 30)).prop_map(|(users, removed)| {
            users
                .into_iter()
                .zip(removed)
                .map(|(user, removed)| StoredUser { user, removed })
                .collect()
        })
    }

    /// The directory the database should hold after a sync that saw `current`.
    fn expected(old: &[StoredUser], current: &[ScimUser], infer_removals: bool) -> Vec<StoredUser> {
        let mut map: HashMap<String, StoredUser> =
            old.iter().map(|s| (s.user.id.clone(), s.clone())).collect();
        let present: std::collections::HashSet<&str> =
            current.iter().map(|u| u.id.as_str()).collect();
        if infer_removals {
            for s in map.values_mut() {
                if !present.contains(s.user.id.as_str()) {
                    s.removed = true;
                }
            }
        }
        for u in current {
            map.insert(
                u.id.clone(),
                StoredUser {
                    user: u.clone(),
                    removed: false,
                },
            );
        }
        let mut v: Vec<_> = map.into_values().collect();
        v.sort_by(|a, b| a.user.id.cmp(&b.user.id));
        v
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn applying_the_diff_gives_the_new_state(old in arb_stored(), new in arb_dir(), infer in any::<bool>()) {
            let changes = diff(&old, &new, infer);
            prop_assert_eq!(apply(&old, &changes), expected(&old, &new, infer));
        }

        #[test]
        fn an_unchanged_snapshot_gives_no_change(dir in arb_dir()) {
            prop_assert!(diff(&stored(&dir), &dir, true).is_empty());
        }

        #[test]
        fn page_order_does_not_matter(old in arb_stored(), new in arb_dir(), seed in any::<u64>()) {
            let mut shuffled = new.clone();
            // A deterministic shuffle from the seed.
            let n = shuffled.len();
            let mut s = seed;
            for i in (1..n).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (s >> 33) as usize % (i + 1));
            }
            prop_assert_eq!(diff(&old, &new, true), diff(&old, &shuffled, true));
        }

        #[test]
        fn one_change_per_member_and_changes_are_real(old in arb_stored(), new in arb_dir()) {
            let changes = diff(&old, &new, true);
            let mut ids: Vec<_> = changes.iter().map(|c| c.user.id.clone()).collect();
            ids.dedup();
            prop_assert_eq!(ids.len(), changes.len());
            for c in &changes {
                if matches!(c.kind, ChangeKind::Updated | ChangeKind::Deactivated | ChangeKind::Reactivated) {
                    prop_assert!(!c.changed_fields.is_empty());
                }
                if c.kind == ChangeKind::Deactivated { prop_assert!(!c.user.active && c.previous.as_ref().unwrap().active); }
                if c.kind == ChangeKind::Reactivated { prop_assert!(c.user.active && !c.previous.as_ref().unwrap().active); }
            }
        }

        #[test]
        fn without_removals_no_member_is_removed(old in arb_stored(), new in arb_dir()) {
            prop_assert!(diff(&old, &new, false).iter().all(|c| c.kind != ChangeKind::Removed));
        }
    }
}
