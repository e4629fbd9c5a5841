//! The cluster link's counters: kept here for [`ClusterStats::snapshot`] (tests, the hub), and
//! mirrored into the server's metrics (`sockserv_chat_cluster_*`: link state, published, received,
//! dropped, gaps) as they change.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use sockserv_framework::metrics::ServerMetrics;

/// Counters since the server started; shared by the hub and the link's two threads.
#[derive(Debug)]
pub struct ClusterStats {
    /// The server's metrics, where the counters are exported.
    metrics: ServerMetrics,
    /// The publishing connection is up.
    publisher_up: AtomicBool,
    /// The subscribing connection is up and subscribed to every room with local members.
    subscriber_up: AtomicBool,
    published: AtomicU64,
    received: AtomicU64,
    dropped: AtomicU64,
    gaps: AtomicU64,
    duplicates: AtomicU64,
    malformed: AtomicU64,
    reconnects: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClusterCounters {
    /// Both connections up and every room with local members subscribed (gauge).
    pub link_up: bool,
    /// Messages published to Redis.
    pub published: u64,
    /// Messages from other instances delivered here (own echoes and duplicates not counted).
    pub received: u64,
    /// Messages not published: the publish queue was full, or the link was down.
    pub dropped: u64,
    /// Messages of other instances found missing by their sequence numbers.
    pub gaps: u64,
    /// Messages from other instances seen twice, dropped.
    pub duplicates: u64,
    /// Messages from Redis that were not ours to read (malformed, too long), dropped.
    pub malformed: u64,
    /// Connections to Redis made again after one failed or was lost.
    pub reconnects: u64,
}

impl ClusterStats {
    /// Counters that `metrics` exports too.
    pub fn new(metrics: ServerMetrics) -> ClusterStats {
        metrics.has_cluster();
        metrics.cluster_link(false);
        ClusterStats {
            metrics,
            publisher_up: AtomicBool::new(false),
            subscriber_up: AtomicBool::new(false),
            published: AtomicU64::new(0),
            received: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
        }
    }

    /// The publishing connection is up, or not.
    pub(super) fn publisher(&self, up: bool) {
        self.publisher_up.store(up, Ordering::Relaxed);
        self.metrics.cluster_link(self.link_up());
    }

    /// The subscribing connection is up and subscribed, or not.
    pub(super) fn subscriber(&self, up: bool) {
        self.subscriber_up.store(up, Ordering::Relaxed);
        self.metrics.cluster_link(self.link_up());
    }

    pub fn snapshot(&self) -> ClusterCounters {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ClusterCounters {
            link_up: self.link_up(),
            published: get(&self.published),
            received: get(&self.received),
            dropped: get(&self.dropped),
            gaps: get(&self.gaps),
            duplicates: get(&self.duplicates),
            malformed: get(&self.malformed),
            reconnects: get(&self.reconnects),
        }
    }

    pub fn link_up(&self) -> bool {
        self.publisher_up.load(Ordering::Relaxed) && self.subscriber_up.load(Ordering::Relaxed)
    }

    pub(crate) fn published(&self, n: u64) {
        self.published.fetch_add(n, Ordering::Relaxed);
        self.metrics.cluster_published(n);
    }
    pub(crate) fn received(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
        self.metrics.cluster_received(1);
    }
    pub(crate) fn dropped(&self, n: u64) {
        if n > 0 {
            self.dropped.fetch_add(n, Ordering::Relaxed);
            self.metrics.cluster_dropped(n);
        }
    }
    pub(crate) fn gaps(&self, n: u64) {
        self.gaps.fetch_add(n, Ordering::Relaxed);
        self.metrics.cluster_gaps(n);
    }
    pub(crate) fn duplicate(&self) {
        self.duplicates.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn malformed(&self) {
        self.malformed.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn reconnected(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }
}
