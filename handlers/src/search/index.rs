//! The search index: key → value pairs looked up in one of four match modes, loaded once at config
//! time and shared read-only by every request (and every forked child).
//!
//! Entries are kept sorted by key, so an exact lookup is a binary search. The other modes also keep
//! the keys case-folded (Unicode lower case) and sorted, so case-insensitive and prefix lookups are a
//! binary search for a range, and substring lookups a scan that keeps at most `limit` hits per rank.
//! Hits are ranked — the key as typed, then the same key in another case, then keys that start with
//! the query, then keys that merely contain it — and in key order within a rank, so the first hit is
//! the best one and replies are deterministic.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

/// The tutorial's three entries, the default index.
pub const TUTORIAL_ENTRIES: [(&str, &str); 3] = [
    ("morpheus", "Follow the white rabbit. \u{1f430}"),
    (
        "ring",
        "In the caves beneath the Misty Mountains. \u{1f48d}",
    ),
    ("\u{1f436}", "\u{1f43e} Playing ball! \u{1f3d0}"),
];

/// The default `limit`: how many hits a non-exact reply lists.
pub const DEFAULT_LIMIT: usize = 10;

/// How a query matches keys (option `match`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MatchMode {
    /// The key as typed, as in the tutorial.
    #[default]
    Exact,
    /// The key in any case.
    CaseInsensitive,
    /// Keys that start with the query, in any case.
    Prefix,
    /// Keys that contain the query, in any case.
    Substring,
}

impl MatchMode {
    pub const ALL: [MatchMode; 4] = [
        MatchMode::Exact,
        MatchMode::CaseInsensitive,
        MatchMode::Prefix,
        MatchMode::Substring,
    ];

    pub fn name(self) -> &'static str {
        match self {
            MatchMode::Exact => "exact",
            MatchMode::CaseInsensitive => "case-insensitive",
            MatchMode::Prefix => "prefix",
            MatchMode::Substring => "substring",
        }
    }

    pub fn from_name(name: &str) -> Option<MatchMode> {
        Self::ALL.into_iter().find(|mode| mode.name() == name)
    }
}

impl fmt::Display for MatchMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One entry found by a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit<'a> {
    /// The entry's key, as the index holds it (the query may differ in case or length).
    pub key: &'a str,
    /// The entry's value.
    pub value: &'a str,
}

/// The entries, their match mode and the hit limit.
#[derive(Debug, Clone)]
pub struct Index {
    mode: MatchMode,
    limit: usize,
    /// Sorted by key.
    entries: Vec<(Box<str>, Box<str>)>,
    /// Case-folded keys with their entry's position, sorted; empty in exact mode.
    folded: Vec<(Box<str>, u32)>,
}

impl Default for Index {
    /// The tutorial's index: its three entries, exact matches.
    fn default() -> Index {
        Index::new(tutorial_entries(), MatchMode::Exact, DEFAULT_LIMIT)
    }
}

/// [`TUTORIAL_ENTRIES`] as owned pairs.
pub fn tutorial_entries() -> Vec<(String, String)> {
    TUTORIAL_ENTRIES
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Index {
    /// An index of `entries` (a later duplicate key wins); `limit` is at least 1.
    pub fn new(
        entries: impl IntoIterator<Item = (String, String)>,
        mode: MatchMode,
        limit: usize,
    ) -> Index {
        let unique: HashMap<String, String> = entries.into_iter().collect();
        let mut entries: Vec<(Box<str>, Box<str>)> = unique
            .into_iter()
            .map(|(k, v)| (k.into_boxed_str(), v.into_boxed_str()))
            .collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        entries.shrink_to_fit();
        let mut folded: Vec<(Box<str>, u32)> = Vec::new();
        if mode != MatchMode::Exact {
            folded = (0..entries.len())
                .map(|at| (entries[at].0.to_lowercase().into_boxed_str(), at as u32))
                .collect();
            // Ties in the folded key keep key order, since positions follow it.
            folded.sort_unstable();
        }
        Index {
            mode,
            limit: limit.max(1),
            entries,
            folded,
        }
    }

    pub fn mode(&self) -> MatchMode {
        self.mode
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The heap bytes the index holds (strings and tables), for the load benchmark.
    pub fn heap_bytes(&self) -> usize {
        let strings: usize = self.entries.iter().map(|(k, v)| k.len() + v.len()).sum();
        let folded: usize = self.folded.iter().map(|(k, _)| k.len()).sum();
        strings
            + folded
            + self.entries.capacity() * std::mem::size_of::<(Box<str>, Box<str>)>()
            + self.folded.capacity() * std::mem::size_of::<(Box<str>, u32)>()
    }

    /// The value stored under exactly `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.position(key).map(|at| &*self.entries[at].1)
    }

    fn position(&self, key: &str) -> Option<usize> {
        self.entries.binary_search_by(|(k, _)| (**k).cmp(key)).ok()
    }

    /// The hits for `query` in the index's mode, best first, at most `limit` of them.
    pub fn lookup(&self, query: &str) -> Vec<Hit<'_>> {
        if self.mode == MatchMode::Exact {
            return self
                .position(query)
                .map(|at| self.hit(at as u32))
                .into_iter()
                .collect();
        }
        let folded_query = query.to_lowercase();
        let mut ranks: [Vec<u32>; 4] = Default::default();
        for (folded, at) in self.candidates(&folded_query) {
            let rank = self.rank(query, &folded_query, folded, *at);
            if ranks[rank].len() < self.limit {
                ranks[rank].push(*at);
            }
        }
        ranks
            .iter()
            .flatten()
            .take(self.limit)
            .map(|&at| self.hit(at))
            .collect()
    }

    /// The folded keys that may match, in folded order: a range for the first modes, all for substring.
    fn candidates<'s>(
        &'s self,
        folded_query: &'s str,
    ) -> Box<dyn Iterator<Item = &'s (Box<str>, u32)> + 's> {
        if self.mode == MatchMode::Substring {
            let query = folded_query;
            return Box::new(self.folded.iter().filter(move |(k, _)| k.contains(query)));
        }
        let start = self.folded.partition_point(|(k, _)| **k < *folded_query);
        let exact = self.mode == MatchMode::CaseInsensitive;
        Box::new(self.folded[start..].iter().take_while(move |(k, _)| {
            if exact {
                **k == *folded_query
            } else {
                k.starts_with(folded_query)
            }
        }))
    }

    /// 0: the key as typed; 1: the key in another case; 2: starts with the query; 3: contains it.
    fn rank(&self, query: &str, folded_query: &str, folded: &str, at: u32) -> usize {
        if *self.entries[at as usize].0 == *query {
            0
        } else if folded == folded_query {
            1
        } else if folded.starts_with(folded_query) {
            2
        } else {
            3
        }
    }

    fn hit(&self, at: u32) -> Hit<'_> {
        let (key, value) = &self.entries[at as usize];
        Hit { key, value }
    }
}

/// Reads an index file: a JSON object or a TOML table of key → string value, by its extension
/// (`.json` or `.toml`).
///
/// # Errors
///
/// A message naming the file when its extension is neither, it cannot be read, or it is not a
/// table of key → string value.
pub fn load_entries(path: &Path) -> Result<Vec<(String, String)>, String> {
    let shown = path.display();
    let kind = path.extension().and_then(|ext| ext.to_str()).unwrap_or("");
    let parse: fn(&str) -> Result<HashMap<String, String>, String> = match kind {
        "json" => |text| serde_json::from_str(text).map_err(|err| err.to_string()),
        "toml" => |text| toml::from_str(text).map_err(|err| err.to_string().trim_end().to_string()),
        _ => {
            return Err(format!(
                "index file {shown}: name it .json or .toml, so its format is known"
            ))
        }
    };
    let text = std::fs::read_to_string(path)
        .map_err(|err| format!("cannot read index file {shown}: {err}"))?;
    let entries = parse(&text).map_err(|err| {
        format!("index file {shown} is not a {kind} table of key → string value: {err}")
    })?;
    Ok(entries.into_iter().collect())
}

#[cfg(test)]
mod tests;
