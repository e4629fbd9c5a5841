//! The range of every count and size key, as the checks apply them: the bound from
//! [`crate::settings::limits`] (where each bound's reason is written) and a few words on it for the
//! message, so that a refused value reads
//! `max_packet_size: must be between 1 and 65507 (the largest UDP payload over IPv4), got 100000`.

use crate::settings::limits;
use crate::Endpoint;

/// The largest value a count or size key accepts (the smallest is always 1), and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Limit {
    /// The largest value accepted.
    pub max: usize,
    /// What the bound is, in a few words, when the number alone does not say (`64 MiB`).
    pub note: Option<&'static str>,
}

impl Limit {
    const fn plain(max: usize) -> Limit {
        Limit { max, note: None }
    }

    /// What a refused value is told: the range, and the value as it is written in the file.
    pub fn message(&self, written: &str) -> String {
        match self.note {
            Some(note) => format!("must be between 1 and {} ({note}), got {written}", self.max),
            None => format!("must be between 1 and {}, got {written}", self.max),
        }
    }
}

pub(super) const MAX_THREADS: Limit = Limit::plain(limits::MAX_THREADS);
pub(super) const MAX_CHILDREN: Limit = Limit::plain(limits::MAX_CHILDREN);
pub(super) const POOL_WORKERS: Limit = Limit::plain(limits::POOL_WORKERS);
pub(super) const POOL_QUEUE: Limit = Limit::plain(limits::POOL_QUEUE);
pub(super) const REACTOR_LOOPS: Limit = Limit::plain(limits::REACTOR_LOOPS);
pub(super) const DISABLE_AFTER_PANICS: Limit = Limit::plain(limits::DISABLE_AFTER_PANICS);
pub(super) const REQUEST_QUEUE_SIZE: Limit = Limit::plain(limits::REQUEST_QUEUE_SIZE as usize);

pub(super) const BUFFER_SIZE: Limit = Limit {
    max: limits::BUFFER_SIZE,
    note: Some("64 MiB"),
};

/// `max_packet_size`: the largest datagram this endpoint can carry. An endpoint that did not parse
/// (reported already) gets the loosest bound, so that no second error is made up.
pub(super) fn max_packet_size(endpoint: Option<&Endpoint>) -> Limit {
    let (max, note) = match endpoint {
        Some(Endpoint::Udp(addr)) if addr.is_ipv4() => {
            (limits::UDP_V4_PACKET, "the largest UDP payload over IPv4")
        }
        Some(Endpoint::Udp(_)) => (limits::UDP_V6_PACKET, "the largest UDP payload over IPv6"),
        _ => (limits::UNIX_DGRAM_PACKET, "16 MiB"),
    };
    Limit {
        max,
        note: Some(note),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_packet_bound_follows_the_endpoint() {
        let bound = |text: &str| max_packet_size(Some(&text.parse().unwrap())).max;
        assert_eq!(bound("udp://127.0.0.1:1"), 65_507);
        assert_eq!(bound("udp://[::1]:1"), 65_527);
        assert_eq!(bound("unix-dgram:///x"), 16 * 1024 * 1024);
        assert_eq!(max_packet_size(None).max, 16 * 1024 * 1024);
    }

    #[test]
    fn the_message_has_the_range_and_the_value_as_written() {
        assert_eq!(
            BUFFER_SIZE.message("1_000_000_000"),
            "must be between 1 and 67108864 (64 MiB), got 1_000_000_000"
        );
        assert_eq!(
            MAX_THREADS.message("0"),
            "must be between 1 and 100000, got 0"
        );
    }
}
