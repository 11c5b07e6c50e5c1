//! The paging state machine behind "list all users as one snapshot". Pure: it is told what
//! each page contained and answers what to ask for next, so every odd server behaviour can be
//! tested without a network.
//!
//! RFC 7644 offset paging has no snapshot isolation: a user added or removed while we page
//! shifts everything after it, so a user can be skipped or seen twice. We cannot prevent
//! that, but we can notice it. The snapshot we hand on says whether it is *complete* (we read
//! to the end) and *consistent* (no change of `totalResults`, no duplicate, no unusable
//! resource, and exactly `totalResults` distinct ids). Later stages infer removals only from
//! a snapshot that is both; everything else may still update the users it did see.

use super::model::{ListPage, ScimUser};
use std::hash::BuildHasher;

/// Limits that keep a misbehaving server from holding us forever.
#[derive(Debug, Clone, Copy)]
pub struct PagingLimits {
    pub page_size: u64,
    /// The most pages one pass may read. With the default page size this is 5 million users,
    /// far beyond any 1Password account, yet finite.
    pub max_pages: u64,
}

impl Default for PagingLimits {
    fn default() -> Self {
        Self {
            page_size: 100,
            max_pages: 50_000,
        }
    }
}

/// What went wrong so badly that there is no snapshot at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PagingError {
    #[error(
        "page at startIndex {start} brought no user we had not already seen, so the server is probably ignoring startIndex"
    )]
    NoProgress { start: u64 },
    #[error("the listing did not end within {max_pages} pages")]
    TooManyPages { max_pages: u64 },
}

/// A request for one page: 1-based `startIndex` and `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub start_index: u64,
    pub count: u64,
}

/// Why a snapshot cannot be trusted to say who is gone.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Doubt {
    /// `totalResults` changed between pages: the directory changed while we read it.
    TotalChanged { from: u64, to: u64 },
    /// The same id came back on two pages: entries shifted under us.
    Duplicates { count: u64 },
    /// Resources without a usable id.
    UnusableResources { count: u64 },
    /// The server stopped sending users before `totalResults` was reached.
    EndedEarly { seen: u64, total: u64 },
    /// Distinct ids and the final `totalResults` disagree.
    CountMismatch { seen: u64, total: u64 },
    /// The server never said how many users there are.
    NoTotal,
}

/// All users of one listing pass, with what we know of its quality.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Distinct users by id, sorted by id so that the page order does not matter downstream.
    pub users: Vec<ScimUser>,
    pub total_results: Option<u64>,
    pub pages: u64,
    pub doubts: Vec<Doubt>,
}

impl Snapshot {
    /// True when every page was read, no drift was seen and the distinct ids match the final
    /// `totalResults`: only then may absence from the snapshot mean "removed".
    pub fn is_complete_and_consistent(&self) -> bool {
        self.doubts.is_empty()
    }

    pub fn active_count(&self) -> u64 {
        self.users.iter().filter(|u| u.active).count() as u64
    }
}

#[derive(Debug)]
pub struct Pager {
    limits: PagingLimits,
    next_start: u64,
    pages: u64,
    /// `totalResults` as first and last seen.
    first_total: Option<u64>,
    last_total: Option<u64>,
    /// Users in arrival order, and the 64-bit hashes of the ids seen: the ids are not stored
    /// twice, so a 100,000-member snapshot costs one copy of each member. A repeat is found by
    /// its hash (a false match, about 1 in 10^9 for 100,000 ids, would only mark the snapshot
    /// doubtful); `finish` removes the actual repeats by id.
    users: Vec<ScimUser>,
    seen: std::collections::HashSet<u64>,
    hasher: std::collections::hash_map::RandomState,
    duplicates: u64,
    unusable: u64,
    ended_early: bool,
    done: bool,
}

impl Pager {
    pub fn new(limits: PagingLimits) -> Self {
        Self {
            limits: PagingLimits {
                page_size: limits.page_size.max(1),
                max_pages: limits.max_pages.max(1),
            },
            next_start: 1,
            pages: 0,
            first_total: None,
            last_total: None,
            users: Vec::new(),
            seen: std::collections::HashSet::new(),
            hasher: std::collections::hash_map::RandomState::new(),
            duplicates: 0,
            unusable: 0,
            ended_early: false,
            done: false,
        }
    }

    /// The next page to ask for, `None` once the listing is finished, or an error when the
    /// page budget is spent.
    pub fn next_request(&self) -> Result<Option<PageRequest>, PagingError> {
        if self.done {
            return Ok(None);
        }
        if self.pages >= self.limits.max_pages {
            return Err(PagingError::TooManyPages {
                max_pages: self.limits.max_pages,
            });
        }
        Ok(Some(PageRequest {
            start_index: self.next_start,
            count: self.limits.page_size,
        }))
    }

    /// Takes in the page answered for `req`.
    pub fn ingest(&mut self, req: PageRequest, page: ListPage) -> Result<(), PagingError> {
        self.pages += 1;
        if let Some(total) = page.total_results {
            self.first_total.get_or_insert(total);
            self.last_total = Some(total);
        }
        self.unusable += page.unusable_resources;
        let received = page.users.len() as u64 + page.unusable_resources;
        let mut new_ids = 0u64;
        for user in page.users {
            if self.seen.insert(self.hasher.hash_one(user.id.as_str())) {
                new_ids += 1;
            } else {
                self.duplicates += 1;
            }
            self.users.push(user);
        }
        if received == 0 {
            // An empty page ends the pass. If the server still claims more users, we stopped
            // early and the snapshot will say so.
            if self.last_total.is_some_and(|t| req.start_index <= t) {
                self.ended_early = true;
            }
            self.done = true;
            return Ok(());
        }
        if new_ids == 0 && page.unusable_resources == 0 {
            // Nothing new on a non-empty page: asking for the next offset would most likely
            // bring the same page again. Stop instead of walking the offsets to the end.
            return Err(PagingError::NoProgress {
                start: req.start_index,
            });
        }
        // Advance by what we actually got: servers may return fewer than `count` (a page cap)
        // and that is not the end of the list.
        self.next_start = req.start_index + received;
        match self.last_total {
            Some(total) if self.next_start > total => self.done = true,
            Some(_) => {}
            // Without totalResults the only end marker is a short page.
            None if received < req.count => self.done = true,
            None => {}
        }
        Ok(())
    }

    pub fn finish(self) -> Snapshot {
        let mut doubts = Vec::new();
        let seen = self.seen.len() as u64;
        if let (Some(from), Some(to)) = (self.first_total, self.last_total)
            && from != to
        {
            doubts.push(Doubt::TotalChanged { from, to });
        }
        if self.duplicates > 0 {
            doubts.push(Doubt::Duplicates {
                count: self.duplicates,
            });
        }
        if self.unusable > 0 {
            doubts.push(Doubt::UnusableResources {
                count: self.unusable,
            });
        }
        match self.last_total {
            Some(total) if self.ended_early => doubts.push(Doubt::EndedEarly { seen, total }),
            Some(total) if seen != total => doubts.push(Doubt::CountMismatch { seen, total }),
            Some(_) => {}
            None => doubts.push(Doubt::NoTotal),
        }
        drop(self.seen);
        let mut users = self.users;
        // Stable, so that of two copies of one id the later read comes last and is kept.
        users.sort_by(|a, b| a.id.cmp(&b.id));
        let mut kept: Vec<ScimUser> = Vec::with_capacity(0);
        if users.windows(2).any(|w| w[0].id == w[1].id) {
            kept.reserve(users.len());
            let mut iter = users.into_iter().peekable();
            while let Some(u) = iter.next() {
                if iter.peek().is_some_and(|next| next.id == u.id) {
                    continue; // a later copy follows
                }
                kept.push(u);
            }
            users = kept;
        }
        users.shrink_to_fit();
        Snapshot {
            users,
            total_results: self.last_total,
            pages: self.pages,
            doubts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: u64) -> ScimUser {
        ScimUser {
            id: format!("U{id:05}"),
            user_name: None,
            email: None,
            display_name: None,
            given_name: None,
            family_name: None,
            active: true,
        }
    }

    /// A server over `ids` that serves at most `cap` per page, reporting `total`.
    fn serve(ids: &[u64], req: PageRequest, cap: u64, total: Option<u64>) -> ListPage {
        let from = (req.start_index.max(1) - 1) as usize;
        let n = req.count.min(cap) as usize;
        let users: Vec<_> = ids.iter().skip(from).take(n).map(|i| user(*i)).collect();
        ListPage {
            total_results: total,
            start_index: Some(req.start_index),
            items_per_page: Some(users.len() as u64),
            users,
            unusable_resources: 0,
        }
    }

    fn run(
        ids: &[u64],
        page_size: u64,
        cap: u64,
        total: Option<u64>,
    ) -> Result<Snapshot, PagingError> {
        let mut p = Pager::new(PagingLimits {
            page_size,
            max_pages: 1000,
        });
        while let Some(req) = p.next_request()? {
            let page = serve(ids, req, cap, total);
            p.ingest(req, page)?;
        }
        Ok(p.finish())
    }

    #[test]
    fn reads_everything_with_full_and_short_pages() {
        let ids: Vec<u64> = (0..250).collect();
        for (size, cap) in [(100, 100), (100, 30), (7, 100), (1000, 1000), (250, 250)] {
            let s = run(&ids, size, cap, Some(250)).unwrap();
            assert_eq!(s.users.len(), 250, "size {size} cap {cap}");
            assert!(s.is_complete_and_consistent(), "{:?}", s.doubts);
        }
    }

    #[test]
    fn empty_directory_is_one_request() {
        let s = run(&[], 100, 100, Some(0)).unwrap();
        assert_eq!(s.pages, 1);
        assert!(s.users.is_empty());
        assert!(s.is_complete_and_consistent());
    }

    #[test]
    fn no_total_ends_on_a_short_page_and_is_doubtful() {
        let ids: Vec<u64> = (0..250).collect();
        let s = run(&ids, 100, 100, None).unwrap();
        assert_eq!(s.users.len(), 250);
        assert_eq!(s.doubts, vec![Doubt::NoTotal]);
    }

    #[test]
    fn server_that_ignores_start_index_is_an_error_not_a_loop() {
        let mut p = Pager::new(PagingLimits {
            page_size: 10,
            max_pages: 1000,
        });
        let ids: Vec<u64> = (0..100).collect();
        let mut requests = 0;
        let err = loop {
            let Some(req) = p.next_request().unwrap() else {
                panic!("finished")
            };
            requests += 1;
            let page = serve(
                &ids,
                PageRequest {
                    start_index: 1,
                    count: req.count,
                },
                10,
                Some(100),
            );
            if let Err(e) = p.ingest(req, page) {
                break e;
            }
        };
        assert_eq!(err, PagingError::NoProgress { start: 11 });
        assert_eq!(requests, 2);
    }

    #[test]
    fn server_that_returns_everything_at_once() {
        let ids: Vec<u64> = (0..500).collect();
        let s = run(&ids, 100, u64::MAX, Some(500));
        // cap bigger than count still honours count in `serve`; emulate a server ignoring count:
        let mut p = Pager::new(PagingLimits::default());
        let req = p.next_request().unwrap().unwrap();
        let page = serve(
            &ids,
            PageRequest {
                start_index: 1,
                count: 10_000,
            },
            10_000,
            Some(500),
        );
        p.ingest(req, page).unwrap();
        assert_eq!(p.next_request().unwrap(), None);
        assert!(p.finish().is_complete_and_consistent());
        assert!(s.unwrap().is_complete_and_consistent());
    }

    #[test]
    fn page_budget_is_bounded() {
        let ids: Vec<u64> = (0..100).collect();
        let mut p = Pager::new(PagingLimits {
            page_size: 10,
            max_pages: 3,
        });
        let err = loop {
            match p.next_request() {
                Ok(Some(req)) => p.ingest(req, serve(&ids, req, 10, Some(100))).unwrap(),
                Ok(None) => panic!("should not finish"),
                Err(e) => break e,
            }
        };
        assert_eq!(err, PagingError::TooManyPages { max_pages: 3 });
    }

    #[test]
    fn start_index_zero_is_read_as_one() {
        let ids: Vec<u64> = (0..20).collect();
        let mut p = Pager::new(PagingLimits {
            page_size: 10,
            max_pages: 10,
        });
        while let Some(req) = p.next_request().unwrap() {
            let mut page = serve(&ids, req, 10, Some(20));
            if req.start_index == 1 {
                page.start_index = Some(0);
            }
            p.ingest(req, page).unwrap();
        }
        let s = p.finish();
        assert_eq!(s.users.len(), 20);
        assert!(s.is_complete_and_consistent());
    }

    #[test]
    fn ended_early_and_count_mismatch_are_doubts() {
        let ids: Vec<u64> = (0..15).collect();
        // Claims 30 users but has 15: the third page is empty.
        let s = run(&ids, 10, 10, Some(30)).unwrap();
        assert_eq!(s.users.len(), 15);
        assert_eq!(
            s.doubts,
            vec![Doubt::EndedEarly {
                seen: 15,
                total: 30
            }]
        );
        // Claims 12 users but serves 15: reads 2 pages (up to startIndex 21 > 12).
        let s = run(&ids, 10, 10, Some(12)).unwrap();
        assert_eq!(
            s.doubts,
            vec![Doubt::CountMismatch {
                seen: 15,
                total: 12
            }]
        );
    }

    #[test]
    fn drift_between_pages_is_noticed() {
        // 30 users; after page 1 a user at the front is deleted, so the next page shifts and
        // one user is skipped, and totalResults drops.
        let mut ids: Vec<u64> = (0..30).collect();
        let mut p = Pager::new(PagingLimits {
            page_size: 10,
            max_pages: 10,
        });
        let mut n = 0;
        while let Some(req) = p.next_request().unwrap() {
            if n == 1 {
                ids.remove(0);
            }
            let total = ids.len() as u64;
            p.ingest(req, serve(&ids, req, 10, Some(total))).unwrap();
            n += 1;
        }
        let s = p.finish();
        assert!(!s.is_complete_and_consistent());
        assert!(s.doubts.contains(&Doubt::TotalChanged { from: 30, to: 29 }));
        // User 10 shifted onto page 1's range and was skipped; deleted user 0 was still read.
        assert_eq!(s.users.len(), 29);
        assert!(
            !s.users.iter().any(|u| u.id == "U00010"),
            "one user skipped by the shift"
        );

        // An insertion at the front makes the last user of page 1 come again on page 2.
        let mut ids: Vec<u64> = (0..30).collect();
        let mut p = Pager::new(PagingLimits {
            page_size: 10,
            max_pages: 10,
        });
        let mut n = 0;
        while let Some(req) = p.next_request().unwrap() {
            if n == 1 {
                ids.insert(0, 999);
            }
            let total = ids.len() as u64;
            p.ingest(req, serve(&ids, req, 10, Some(total))).unwrap();
            n += 1;
        }
        let s = p.finish();
        assert!(
            s.doubts.contains(&Doubt::Duplicates { count: 1 }),
            "{:?}",
            s.doubts
        );
    }

    #[test]
    fn duplicates_without_total_change_are_doubts() {
        // A server that repeats the last user of each page (overlapping pages).
        let ids: Vec<u64> = (0..20).collect();
        let mut p = Pager::new(PagingLimits {
            page_size: 10,
            max_pages: 10,
        });
        while let Some(req) = p.next_request().unwrap() {
            let mut page = serve(&ids, req, 10, Some(20));
            if req.start_index > 1 {
                page.users.insert(0, user(req.start_index - 2));
            }
            p.ingest(req, page).unwrap();
        }
        let s = p.finish();
        assert_eq!(s.users.len(), 20);
        assert!(!s.is_complete_and_consistent());
        assert!(matches!(s.doubts[0], Doubt::Duplicates { .. }));
    }

    #[test]
    fn users_are_sorted_by_id_whatever_the_page_order() {
        let ids: Vec<u64> = (0..50).rev().collect();
        let s = run(&ids, 7, 7, Some(50)).unwrap();
        assert!(s.users.windows(2).all(|w| w[0].id < w[1].id));
    }
}
