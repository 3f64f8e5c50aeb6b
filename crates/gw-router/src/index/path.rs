//! Per-hostname candidate indexes: HTTP paths (exact map, segment trie, regex list) and gRPC
//! service/method maps.
//!
//! The indexes hold *ranks*: positions in the listener's precedence order (`http_order` /
//! `grpc_order` of the table). Every list is sorted by rank, so a lookup scans each list only
//! up to its first full match, or up to the best rank found so far.

use hashbrown::HashMap;

use gw_model::resources::{PathMatchType, StringMatchType};
use gw_model::table::GrpcMatch;

/// Scans a sorted rank list; records the first rank that passes `check` when it beats `best`.
fn scan(list: &[u32], best: &mut Option<u32>, check: &mut impl FnMut(u32) -> bool) {
    for &rank in list {
        if best.is_some_and(|b| rank >= b) {
            return;
        }
        if check(rank) {
            *best = Some(rank);
            return;
        }
    }
}

/// HTTP candidates of one route-hostname group.
#[derive(Debug, Default)]
pub(crate) struct HttpGroup {
    exact: HashMap<Box<str>, Vec<u32>>,
    prefix: PrefixNode,
    regex: Vec<u32>,
}

/// A node of the PathPrefix trie: one path segment per level.
#[derive(Debug, Default)]
struct PrefixNode {
    ranks: Vec<u32>,
    children: HashMap<Box<str>, PrefixNode>,
}

impl HttpGroup {
    /// Adds a match; ranks must be added in increasing order.
    pub(crate) fn insert(&mut self, kind: PathMatchType, value: &str, rank: u32) {
        match kind {
            PathMatchType::Exact => self.exact.entry_ref(value).or_default().push(rank),
            PathMatchType::PathPrefix => {
                let mut node = &mut self.prefix;
                let trimmed = value.trim_start_matches('/').trim_end_matches('/');
                if !trimmed.is_empty() {
                    for seg in trimmed.split('/') {
                        node = node.children.entry_ref(seg).or_default();
                    }
                }
                node.ranks.push(rank);
            }
            PathMatchType::RegularExpression => self.regex.push(rank),
        }
    }

    /// The best (lowest) rank among the candidates for `path` that pass `check`.
    ///
    /// Exact candidates come from a hash lookup; PathPrefix candidates from the trie nodes along
    /// the path's segments (deepest, i.e. longest prefix, first); regex candidates are all of
    /// the group's, scanned only while they could still beat the best match found.
    pub(crate) fn find(&self, path: &str, mut check: impl FnMut(u32) -> bool) -> Option<u32> {
        let mut best = None;
        if let Some(list) = self.exact.get(path) {
            scan(list, &mut best, &mut check);
        }
        let rest = path.strip_prefix('/').unwrap_or(path);
        visit(&self.prefix, rest.split('/'), &mut best, &mut check);
        scan(&self.regex, &mut best, &mut check);
        best
    }
}

/// Descends the trie along the path's segments, then scans on the way back up (longest
/// prefix first). Depth is bounded by the configured prefixes, not by the request.
fn visit<'p>(
    node: &PrefixNode,
    mut segments: impl Iterator<Item = &'p str>,
    best: &mut Option<u32>,
    check: &mut impl FnMut(u32) -> bool,
) {
    if let Some(seg) = segments.next()
        && let Some(child) = node.children.get(seg)
    {
        visit(child, segments, best, check);
    }
    scan(&node.ranks, best, check);
}

/// gRPC candidates of one route-hostname group.
#[derive(Debug, Default)]
pub(crate) struct GrpcGroup {
    /// Exact service and method, keyed `service/method`.
    full: HashMap<Box<str>, Vec<u32>>,
    /// Exact service only.
    service: HashMap<Box<str>, Vec<u32>>,
    /// Exact method only.
    method: HashMap<Box<str>, Vec<u32>>,
    /// Regular expressions and match-all rules.
    rest: Vec<u32>,
}

impl GrpcGroup {
    /// Adds a match; ranks must be added in increasing order.
    pub(crate) fn insert(&mut self, m: &GrpcMatch, rank: u32) {
        let Some(mm) = m
            .method
            .as_ref()
            .filter(|mm| mm.type_ == StringMatchType::Exact)
        else {
            self.rest.push(rank);
            return;
        };
        let service = mm
            .service
            .as_deref()
            .map(|s| s.strip_prefix('.').unwrap_or(s));
        match (service, mm.method.as_deref()) {
            (Some(s), Some(m)) => self
                .full
                .entry(format!("{s}/{m}").into())
                .or_default()
                .push(rank),
            (Some(s), None) => self.service.entry_ref(s).or_default().push(rank),
            (None, Some(m)) => self.method.entry_ref(m).or_default().push(rank),
            (None, None) => self.rest.push(rank),
        }
    }

    /// The best rank among the candidates for `service`/`method` that pass `check`.
    pub(crate) fn find(
        &self,
        service: &str,
        method: &str,
        full: &str,
        mut check: impl FnMut(u32) -> bool,
    ) -> Option<u32> {
        let mut best = None;
        for list in [
            self.full.get(full),
            self.service.get(service),
            self.method.get(method),
        ]
        .into_iter()
        .flatten()
        {
            scan(list, &mut best, &mut check);
        }
        scan(&self.rest, &mut best, &mut check);
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trie_candidates_longest_prefix_first() {
        let mut g = HttpGroup::default();
        g.insert(PathMatchType::PathPrefix, "/", 5);
        g.insert(PathMatchType::PathPrefix, "/abc", 3);
        g.insert(PathMatchType::PathPrefix, "/abc/def", 1);
        g.insert(PathMatchType::Exact, "/abc", 0);
        let seen = |path: &str| {
            let mut v = Vec::new();
            g.find(path, |r| {
                v.push(r);
                false
            });
            v
        };
        assert_eq!(seen("/abc/def/x"), [1, 3, 5]);
        assert_eq!(seen("/abc"), [0, 3, 5]);
        assert_eq!(seen("/abc/"), [3, 5]);
        assert_eq!(seen("/abcd"), [5]);
        assert_eq!(seen("/"), [5]);
    }
}
