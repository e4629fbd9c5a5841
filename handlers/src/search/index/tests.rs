//! Unit tests of the index: the four match modes, ranking, the limit, and loading files.

use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

fn index(mode: MatchMode, limit: usize) -> Index {
    let entries = [
        ("ring", "one"),
        ("Ring", "two"),
        ("ringo", "three"),
        ("earring", "four"),
        ("RINGS", "five"),
        ("other", "six"),
    ];
    let entries = entries.map(|(k, v)| (k.to_string(), v.to_string()));
    Index::new(entries, mode, limit)
}

fn keys(hits: &[Hit<'_>]) -> Vec<String> {
    hits.iter().map(|hit| hit.key.to_string()).collect()
}

#[test]
fn the_default_is_the_tutorial_s_three_entries() {
    let index = Index::default();
    assert_eq!((index.len(), index.mode()), (3, MatchMode::Exact));
    assert_eq!(index.get("morpheus"), Some("Follow the white rabbit. 🐰"));
    assert_eq!(
        index.get("ring"),
        Some("In the caves beneath the Misty Mountains. 💍")
    );
    assert_eq!(index.get("🐶"), Some("🐾 Playing ball! 🏐"));
    assert_eq!(index.get("Morpheus"), None);
}

#[test]
fn exact_finds_the_key_as_typed_only() {
    let index = index(MatchMode::Exact, 10);
    assert_eq!(
        index.lookup("Ring"),
        [Hit {
            key: "Ring",
            value: "two"
        }]
    );
    assert!(index.lookup("RING").is_empty());
    assert!(index.lookup("rin").is_empty());
}

#[test]
fn case_insensitive_puts_the_key_as_typed_first() {
    let index = index(MatchMode::CaseInsensitive, 10);
    assert_eq!(keys(&index.lookup("Ring")), ["Ring", "ring"]);
    assert_eq!(keys(&index.lookup("ring")), ["ring", "Ring"]);
    assert_eq!(keys(&index.lookup("RiNg")), ["Ring", "ring"]);
    assert!(index.lookup("rin").is_empty());
}

#[test]
fn prefix_ranks_whole_keys_before_longer_ones() {
    let index = index(MatchMode::Prefix, 10);
    assert_eq!(
        keys(&index.lookup("ring")),
        ["ring", "Ring", "ringo", "RINGS"]
    );
    assert_eq!(keys(&index.lookup("RINGS")), ["RINGS"]);
    assert_eq!(index.lookup("").len(), 6);
    assert!(index.lookup("x").is_empty());
}

#[test]
fn substring_ranks_prefixes_before_inner_matches() {
    let index = index(MatchMode::Substring, 10);
    assert_eq!(
        keys(&index.lookup("ring")),
        ["ring", "Ring", "ringo", "RINGS", "earring"]
    );
    assert_eq!(keys(&index.lookup("th")), ["other"]);
    assert_eq!(keys(&index.lookup("inGo")), ["ringo"]);
}

#[test]
fn the_limit_keeps_the_best_hits() {
    assert_eq!(
        keys(&index(MatchMode::Substring, 2).lookup("ring")),
        ["ring", "Ring"]
    );
    assert_eq!(keys(&index(MatchMode::Prefix, 1).lookup("RIN")), ["Ring"]);
    assert_eq!(index(MatchMode::Prefix, 0).limit(), 1);
}

#[test]
fn a_later_duplicate_key_wins() {
    let entries = [("k", "first"), ("k", "second")].map(|(k, v)| (k.into(), v.into()));
    let index = Index::new(entries, MatchMode::Exact, 1);
    assert_eq!((index.len(), index.get("k")), (1, Some("second")));
}

#[test]
fn unicode_keys_fold_too() {
    let entries = [("Ärger", "a"), ("ÉTÉ", "b")].map(|(k, v)| (k.into(), v.into()));
    let index = Index::new(entries, MatchMode::CaseInsensitive, 5);
    assert_eq!(keys(&index.lookup("ärger")), ["Ärger"]);
    assert_eq!(keys(&index.lookup("été")), ["ÉTÉ"]);
}

/// A file in the temp folder, removed on drop.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn file(suffix: &str, text: &str) -> TempFile {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!("sockserv-index-test-{}-{n}{suffix}", std::process::id());
    let path = std::env::temp_dir().join(name);
    std::fs::File::create(&path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .unwrap();
    TempFile(path)
}

#[test]
fn json_and_toml_files_load() {
    let json = file(".json", r#"{"a": "1", "🐶": "dog", "b c": "2"}"#);
    let mut entries = load_entries(json.path()).unwrap();
    entries.sort();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0], ("a".to_string(), "1".to_string()));
    let toml = file(".toml", "a = \"1\"\n\"b c\" = \"2\"\n");
    assert_eq!(load_entries(toml.path()).unwrap().len(), 2);
}

#[test]
fn bad_files_are_explained() {
    let not_string = file(".json", "{\"a\": 1}");
    let err = load_entries(not_string.path()).unwrap_err();
    assert!(err.contains("expected a string"), "{err}");
    assert!(
        err.contains(&not_string.path().display().to_string()),
        "{err}"
    );
    let nested = file(".toml", "[table]\nkey = \"v\"\n");
    assert!(load_entries(nested.path()).is_err());
    let broken = file(".json", "{\"a\": ");
    assert!(load_entries(broken.path()).unwrap_err().contains("line 1"));
    let unknown = file(".yaml", "a: b");
    assert!(load_entries(unknown.path())
        .unwrap_err()
        .contains(".json or .toml"));
    let missing = Path::new("/nonexistent/index.json");
    assert!(load_entries(missing).unwrap_err().contains("cannot read"));
}

// --- the load benchmark -------------------------------------------------------------------------

/// A process's resident memory and its peak, in KiB, from /proc/self/status.
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Loads a 100 000-entry index from JSON and TOML in every mode and prints time and memory; the
/// figures go to bench/RESULTS.md. Run it alone, optimized:
/// `cargo test --release -p sockserv-handlers -- --ignored --nocapture load_a_100_000_entry_index`
#[test]
#[ignore = "a benchmark: run it by hand, optimized"]
fn load_a_100_000_entry_index() {
    const ENTRIES: usize = 100_000;
    let entries: Vec<(String, String)> = (0..ENTRIES)
        .map(|n| {
            let key = format!(
                "entry-{n:06}-{}",
                ["alpha", "Beta", "gamma", "Delta"][n % 4]
            );
            let value = format!("The value of entry {n}: some text of a typical length, 🐰.");
            (key, value)
        })
        .collect();
    let mut json = String::from("{");
    let mut toml = String::new();
    for (n, (key, value)) in entries.iter().enumerate() {
        let sep = if n == 0 { "" } else { ", " };
        json += &format!("{sep}{key:?}: {value:?}");
        toml += &format!("{key:?} = {value:?}\n");
    }
    json += "}";
    let json_file = file(".json", &json);
    let toml_file = file(".toml", &toml);
    drop(entries);
    println!(
        "index files: JSON {} KiB, TOML {} KiB",
        json.len() / 1024,
        toml.len() / 1024
    );
    println!("| file | mode | load ms | index heap MiB | RSS growth MiB | lookup µs |");
    println!("|---|---|---|---|---|---|");
    for (kind, path) in [("json", json_file.path()), ("toml", toml_file.path())] {
        for mode in MatchMode::ALL {
            let (rss_before, _) = rss_kib();
            let started = std::time::Instant::now();
            let index = Index::new(load_entries(path).unwrap(), mode, DEFAULT_LIMIT);
            let load = started.elapsed();
            let (rss_after, _) = rss_kib();
            assert_eq!(index.len(), ENTRIES);
            let queries = ["entry-054321-beta", "ENTRY-0999", "99-gam", "no such key"];
            let started = std::time::Instant::now();
            let rounds = 20;
            for _ in 0..rounds {
                for query in queries {
                    std::hint::black_box(index.lookup(query));
                }
            }
            let lookup = started.elapsed() / (rounds * queries.len() as u32);
            println!(
                "| {kind} | {mode} | {:.0} | {:.1} | {:.1} | {:.1} |",
                load.as_secs_f64() * 1e3,
                index.heap_bytes() as f64 / (1 << 20) as f64,
                rss_after.saturating_sub(rss_before) as f64 / 1024.0,
                lookup.as_secs_f64() * 1e6
            );
        }
    }
    println!(
        "peak RSS of the whole test process: {} MiB",
        rss_kib().1 / 1024
    );
}
