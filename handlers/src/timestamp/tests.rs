//! Unit tests of the timestamp core (with a pinned clock) and of the handler over in-memory requests.

use chrono::FixedOffset;
use sockserv_framework::config::OptionAt;

use super::*;
use crate::testing;

fn utc_noon() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 2, 12, 34, 56).unwrap()
}

// --- the core ---

#[test]
fn stamps_with_a_pinned_utc_clock() {
    let reply = stamp(b"hello\r\n", &utc_noon(), &TimeFormat::default());
    assert_eq!(reply, b"[2024-01-02 12:34:56] hello\r\n");
}

#[test]
fn stamps_in_the_clock_s_own_offset() {
    let india = FixedOffset::east_opt(5 * 3600 + 30 * 60).unwrap();
    let now = utc_noon().with_timezone(&india);
    let format = TimeFormat::new("%H:%M %z").unwrap();
    assert_eq!(stamp(b"hi", &now, &format), b"[18:04 +0530] hi");
}

#[test]
fn data_bytes_pass_through_untouched() {
    let data = b"\xff\xfe not utf-8 \x00\r\n";
    let reply = stamp(data, &utc_noon(), &TimeFormat::default());
    assert_eq!(&reply[22..], data);
    assert_eq!(
        stamp(b"", &utc_noon(), &TimeFormat::default()),
        b"[2024-01-02 12:34:56] "
    );
}

#[test]
fn format_errors_point_at_the_specifier() {
    let err = TimeFormat::new("%Y-%m %Q").unwrap_err();
    assert_eq!(err.specifier.as_deref(), Some("%Q"));
    assert!(err.to_string().contains("\"%Q\""), "{err}");
    assert_eq!(
        TimeFormat::new("100%").unwrap_err().specifier.as_deref(),
        Some("%")
    );
    assert_eq!(
        TimeFormat::new("%z %#z").unwrap_err().specifier.as_deref(),
        Some("%#z")
    );
    for good in [
        "",
        "%%",
        "%-d/%e %.3f",
        "%::z %:z %Z",
        "literal only",
        "%c",
        "%s",
    ] {
        assert!(TimeFormat::new(good).is_ok(), "{good:?} should be accepted");
    }
    assert_eq!(TimeFormat::new("%%d").unwrap().render(&utc_noon()), "%d");
}

#[test]
fn split_line_finds_the_first_terminator() {
    assert_eq!(split_line(b"ab\r\ncd\n"), Some(4));
    assert_eq!(split_line(b"\n"), Some(1));
    assert_eq!(split_line(b"partial"), None);
    assert_eq!(split_line(b""), None);
}

fn split_all(max: usize, chunks: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut splitter = LineSplitter::new(max);
    let mut lines = Vec::new();
    for chunk in chunks {
        splitter.push(chunk, |line| lines.push(line.to_vec()));
    }
    splitter.finish(|line| lines.push(line.to_vec()));
    lines
}

#[test]
fn splitter_joins_lines_across_chunks_and_keeps_the_tail() {
    let lines = split_all(64, &[b"he", b"llo\r\nwor", b"ld\n\nta", b"il"]);
    assert_eq!(lines, [&b"hello\r\n"[..], b"world\n", b"\n", b"tail"]);
    assert!(split_all(64, &[]).is_empty());
}

#[test]
fn splitter_caps_a_line_without_newline() {
    let lines = split_all(4, &[b"abcdefghij\nxy", b"z\n"]);
    assert_eq!(lines, [&b"abcd"[..], b"efgh", b"ij\n", b"xyz\n"]);
    let lines = split_all(4, &[b"ab", b"cd", b"e\n"]);
    assert_eq!(lines, [&b"abcd"[..], b"e\n"]);
}

#[test]
fn datagram_reply_is_one_buffer() {
    let time = "T";
    assert_eq!(datagram_reply(b"a\nb", time, Framing::Chunk), b"[T] a\nb");
    assert_eq!(
        datagram_reply(b"a\nb", time, Framing::Line),
        b"[T] a\n[T] b"
    );
    assert_eq!(datagram_reply(b"a\n", time, Framing::Line), b"[T] a\n");
    assert_eq!(datagram_reply(b"", time, Framing::Line), b"[T] ");
    assert_eq!(datagram_reply(b"", time, Framing::Chunk), b"[T] ");
}

// --- options ---

fn options(text: &str) -> Result<TimestampOptions, OptionErrors> {
    TimestampOptions::from_table(&text.parse().unwrap())
}

#[test]
fn options_default_to_the_seed() {
    let parsed = options("").unwrap();
    assert_eq!(parsed.format.as_str(), DEFAULT_FORMAT);
    assert!(!parsed.utc);
    assert_eq!(parsed.framing, Framing::Chunk);
    let parsed = options("format = '%s'\nutc = true\nframing = 'line'").unwrap();
    assert_eq!(parsed.format.as_str(), "%s");
    assert!(parsed.utc);
    assert_eq!(parsed.framing, Framing::Line);
}

#[test]
fn options_report_every_problem_on_its_own_with_its_key() {
    let errors = options("format = '%Q'\nutc = 'yes'\nframing = 'lines'\nzone = 'UTC'")
        .unwrap_err()
        .0;
    let expected = [
        (OptionAt::Key("zone".into()), r#"unknown option "zone""#),
        (
            OptionAt::Value("format".into()),
            r#"option "format": "%Q" is not a valid strftime format"#,
        ),
        (
            OptionAt::Value("utc".into()),
            r#"option "utc" must be a boolean"#,
        ),
        (
            OptionAt::Value("framing".into()),
            r#"option "framing" must be "chunk" or "line", not "lines""#,
        ),
    ];
    assert_eq!(errors.len(), expected.len(), "{errors:?}");
    for (at, part) in expected {
        let error = errors.iter().find(|error| error.at == at);
        let error = error.unwrap_or_else(|| panic!("no problem at {at:?} in {errors:?}"));
        assert!(error.message.starts_with(part), "{part:?}: {error:?}");
    }
    assert!(testing::factory(build, "colour = 'red'").is_err());
}

// --- the handler over in-memory requests ---

fn handler(opts: &str) -> Box<dyn RequestHandler> {
    testing::factory(build, opts).unwrap().new_handler()
}

/// Replaces the `[...]` time of each reply with `[T]`, since the handler reads the real clock.
fn untimed(reply: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = reply;
    while let Some(open) = rest.iter().position(|&b| b == b'[') {
        let close = open + rest[open..].iter().position(|&b| b == b']').unwrap();
        out.extend_from_slice(&rest[..open]);
        out.extend_from_slice(b"[T]");
        rest = &rest[close + 1..];
    }
    out.extend_from_slice(rest);
    out
}

fn untimed_writes(writes: &testing::Writes) -> Vec<Vec<u8>> {
    writes.0.iter().map(|write| untimed(write)).collect()
}

#[test]
fn stream_chunk_framing_answers_every_read() {
    let writes = testing::stream(
        &mut *handler("utc = true"),
        &[b"hello", b"hello\r\n", b"a\nb\n"],
    );
    assert_eq!(
        untimed_writes(&writes),
        [&b"[T] hello"[..], b"[T] hello\r\n", b"[T] a\nb\n"]
    );
    let time = &writes.0[0][1..20];
    assert!(
        time.iter()
            .all(|b| b.is_ascii_digit() || b" -:".contains(b)),
        "{time:?}"
    );
}

#[test]
fn stream_line_framing_answers_every_line_one_write_per_read() {
    let writes = testing::stream(
        &mut *handler("framing = 'line'"),
        &[b"he", b"llo\r\nwor", b"ld\nx\n", b"tail"],
    );
    assert_eq!(
        untimed_writes(&writes),
        [&b"[T] hello\r\n"[..], b"[T] world\n[T] x\n", b"[T] tail"]
    );
}

#[test]
fn stream_line_framing_bounds_a_line() {
    let long = vec![b'a'; MAX_LINE + 10];
    let writes = testing::stream(&mut *handler("framing = 'line'"), &[&long, b"\n"]);
    let replies = untimed_writes(&writes);
    assert_eq!(replies.len(), 2);
    assert_eq!(replies[0].len(), 4 + MAX_LINE);
    assert_eq!(replies[1], [&b"[T] "[..], &[b'a'; 10], b"\n"].concat());
}

#[test]
fn datagram_gets_one_write_in_either_framing() {
    let writes = testing::datagram(&mut *handler(""), b"a\nb");
    assert_eq!(untimed_writes(&writes), [b"[T] a\nb".to_vec()]);
    let writes = testing::datagram(&mut *handler("framing = 'line'"), b"a\r\nb\n");
    assert_eq!(untimed_writes(&writes), [b"[T] a\r\n[T] b\n".to_vec()]);
    let writes = testing::datagram(&mut *handler("framing = 'line'"), b"");
    assert_eq!(untimed_writes(&writes), [b"[T] ".to_vec()]);
}
