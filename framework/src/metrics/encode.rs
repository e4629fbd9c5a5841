//! The board, read and written in the Prometheus text format (version 0.0.4) by the Prometheus
//! project's own Rust client, `prometheus-client`: its encoder does the names, the escaping of
//! label values, the `_total` suffixes and the cumulative histogram buckets; a custom
//! [`Collector`] hands it what the board holds at the moment of the scrape.

use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::board::{board, Labels, Slot};
use super::{index, CloseReason, DatagramDrop, Refusal, DURATION_BUCKETS};
use crate::{SocketKind, StrategyKind};

/// The `Content-Type` of what [`render`] writes.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Every series, as a scrape of `/metrics` answers (see the module doc of `metrics`).
pub fn render() -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot::take()));
    let mut text = String::new();
    // Writing to a String cannot fail, and the collector returns no error of its own.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
    text
}

/// One server's counts as read at the scrape.
#[derive(Debug)]
struct Server {
    labels: Vec<(&'static str, String)>,
    stream: bool,
    chat: bool,
    cluster: bool,
    counts: Vec<u64>,
}

impl Server {
    fn read(labels: Labels, slot: &Slot) -> Server {
        let kind = SocketKind::ALL.get(labels.transport).copied();
        let strategy = StrategyKind::ALL.get(labels.strategy).copied();
        // The closes are read before the opens, so that `active` is never below zero: every
        // close read was preceded by its open.
        let mut counts: Vec<u64> = (0..index::END).map(|i| slot.get(i)).collect();
        counts[index::OPENED] = slot.counts[index::OPENED].load(Ordering::Acquire);
        Server {
            labels: vec![
                ("server", labels.name),
                ("handler", labels.handler),
                ("transport", kind.map_or("", SocketKind::scheme).to_string()),
                (
                    "strategy",
                    strategy.map_or("", StrategyKind::name).to_string(),
                ),
            ],
            stream: kind.is_none_or(SocketKind::is_stream),
            chat: counts[index::FLAGS] & index::FLAG_CHAT != 0,
            cluster: counts[index::FLAGS] & index::FLAG_CLUSTER != 0,
            counts,
        }
    }

    fn with(&self, key: &'static str, value: &str) -> Vec<(&'static str, String)> {
        let mut labels = self.labels.clone();
        labels.push((key, value.to_string()));
        labels
    }

    fn closed(&self) -> u64 {
        let closed = index::CLOSED..index::CLOSED + CloseReason::ALL.len();
        self.counts[closed].iter().sum()
    }
}

/// What the board holds, read once per scrape.
#[derive(Debug)]
struct Snapshot {
    servers: Vec<Server>,
    reloads: [u64; 2],
    plugin_load_failures: u64,
}

impl Snapshot {
    fn take() -> Snapshot {
        let board = board();
        let global = &board.global;
        Snapshot {
            servers: (board.labelled())
                .map(|(labels, slot)| Server::read(labels, slot))
                .collect(),
            reloads: [
                global.reloads_succeeded.load(Ordering::Relaxed),
                global.reloads_failed.load(Ordering::Relaxed),
            ],
            plugin_load_failures: global.plugin_load_failures.load(Ordering::Relaxed),
        }
    }
}

type Result = std::result::Result<(), std::fmt::Error>;

fn counter(metric: &mut MetricEncoder<'_>, value: u64) -> Result {
    metric.encode_counter::<NoLabelSet, _, u64>(&value, None)
}

/// One counter series per server, from `value`, over the servers `with` keeps.
fn per_server(
    encoder: &mut DescriptorEncoder<'_>,
    (name, help): (&str, &str),
    servers: &[&Server],
    value: impl Fn(&Server) -> u64,
) -> Result {
    if servers.is_empty() {
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for server in servers {
        counter(&mut metric.encode_family(&server.labels)?, value(server))?;
    }
    Ok(())
}

/// One counter series per server and reason.
fn per_reason(
    encoder: &mut DescriptorEncoder<'_>,
    (name, help): (&str, &str),
    servers: &[&Server],
    reasons: &[(&str, usize)],
) -> Result {
    if servers.is_empty() {
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for server in servers {
        for (reason, at) in reasons {
            let labels = server.with("reason", reason);
            counter(&mut metric.encode_family(&labels)?, server.counts[*at])?;
        }
    }
    Ok(())
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result {
        let all: Vec<&Server> = self.servers.iter().collect();
        let streams: Vec<&Server> = all.iter().copied().filter(|s| s.stream).collect();
        let datagrams: Vec<&Server> = all.iter().copied().filter(|s| !s.stream).collect();
        let chats: Vec<&Server> = all.iter().copied().filter(|s| s.chat).collect();
        let e = &mut encoder;
        let count = |at: usize| move |server: &Server| server.counts[at];
        per_server(
            e,
            (
                "sockserv_connections_accepted",
                "Connections accepted from the listener",
            ),
            &streams,
            count(index::ACCEPTED),
        )?;
        self.active(e, &streams)?;
        let refusals: Vec<_> = (Refusal::ALL.iter())
            .map(|r| (r.name(), index::REFUSED + *r as usize))
            .collect();
        per_reason(
            e,
            (
                "sockserv_connections_refused",
                "Connections accepted and closed unserved, by reason",
            ),
            &streams,
            &refusals,
        )?;
        let closes: Vec<_> = (CloseReason::ALL.iter())
            .map(|r| (r.name(), index::CLOSED + *r as usize))
            .collect();
        per_reason(
            e,
            (
                "sockserv_connections_closed",
                "Served connections that ended, by reason",
            ),
            &streams,
            &closes,
        )?;
        self.durations(e, &streams)?;
        self.traffic(e, &all, &datagrams)?;
        self.chat(e, &chats)?;
        let clusters: Vec<&Server> = all.iter().copied().filter(|s| s.cluster).collect();
        self.cluster(e, &clusters)?;
        self.process(e)
    }
}

impl Snapshot {
    fn active(&self, encoder: &mut DescriptorEncoder<'_>, streams: &[&Server]) -> Result {
        if streams.is_empty() {
            return Ok(());
        }
        let help = "Connections being served now";
        let name = "sockserv_connections_active";
        let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for server in streams {
            let active = server.counts[index::OPENED].saturating_sub(server.closed());
            metric
                .encode_family(&server.labels)?
                .encode_gauge(&active)?;
        }
        Ok(())
    }

    fn durations(&self, encoder: &mut DescriptorEncoder<'_>, streams: &[&Server]) -> Result {
        if streams.is_empty() {
            return Ok(());
        }
        let name = "sockserv_connection_duration_seconds";
        let help = "How long served connections lasted";
        let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
        for server in streams {
            let counts = &server.counts[index::BUCKETS..index::END];
            let bounds = DURATION_BUCKETS.iter().copied().chain([f64::INFINITY]);
            let buckets: Vec<(f64, u64)> = bounds.zip(counts.iter().copied()).collect();
            let total = counts.iter().sum();
            let sum = server.counts[index::DURATION_SUM_US] as f64 / 1e6;
            metric
                .encode_family(&server.labels)?
                .encode_histogram::<NoLabelSet>(sum, total, &buckets, None)?;
        }
        Ok(())
    }

    fn traffic(
        &self,
        e: &mut DescriptorEncoder<'_>,
        all: &[&Server],
        datagrams: &[&Server],
    ) -> Result {
        let count = |at: usize| move |server: &Server| server.counts[at];
        let series = [
            (
                "sockserv_received_bytes",
                "Bytes received (TLS records under TLS)",
                index::BYTES_RECEIVED,
            ),
            (
                "sockserv_sent_bytes",
                "Bytes sent (TLS records under TLS)",
                index::BYTES_SENT,
            ),
            (
                "sockserv_handler_errors",
                "Handler hooks that failed for a reason of their own (not a peer's reset)",
                index::HANDLER_ERRORS,
            ),
            (
                "sockserv_handler_panics",
                "Handler hooks that panicked (caught; the connection closed)",
                index::HANDLER_PANICS,
            ),
        ];
        for (name, help, at) in series {
            per_server(e, (name, help), all, count(at))?;
        }
        let series = [
            (
                "sockserv_datagrams_received",
                "Datagrams received",
                index::DATAGRAMS_RECEIVED,
            ),
            (
                "sockserv_datagrams_sent",
                "Reply datagrams sent",
                index::DATAGRAMS_SENT,
            ),
        ];
        for (name, help, at) in series {
            per_server(e, (name, help), datagrams, count(at))?;
        }
        let drops: Vec<_> = (DatagramDrop::ALL.iter())
            .map(|d| (d.name(), index::DROPPED + *d as usize))
            .collect();
        let help = "Datagrams left unanswered, by reason";
        per_reason(e, ("sockserv_datagrams_dropped", help), datagrams, &drops)
    }

    fn chat(&self, e: &mut DescriptorEncoder<'_>, chats: &[&Server]) -> Result {
        let count = |at: usize| move |server: &Server| server.counts[at];
        per_server(
            e,
            (
                "sockserv_chat_messages_delivered",
                "Chat messages queued for a member",
            ),
            chats,
            count(index::CHAT_DELIVERED),
        )?;
        per_server(
            e,
            (
                "sockserv_chat_messages_dropped",
                "Chat messages a member missed, its queue full (a slow reader)",
            ),
            chats,
            count(index::CHAT_DROPPED),
        )
    }

    fn cluster(&self, e: &mut DescriptorEncoder<'_>, clusters: &[&Server]) -> Result {
        if !clusters.is_empty() {
            let help = "Whether the chat cluster's link to Redis is up (1) or down (0)";
            let name = "sockserv_chat_cluster_link_up";
            let mut metric = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for server in clusters {
                let up = server.counts[index::CLUSTER_LINK_UP];
                metric.encode_family(&server.labels)?.encode_gauge(&up)?;
            }
        }
        let count = |at: usize| move |server: &Server| server.counts[at];
        let series = [
            (
                "sockserv_chat_cluster_published",
                "Chat messages published to the other instances",
                index::CLUSTER_PUBLISHED,
            ),
            (
                "sockserv_chat_cluster_received",
                "Chat messages of other instances delivered here",
                index::CLUSTER_RECEIVED,
            ),
            (
                "sockserv_chat_cluster_dropped",
                "Chat messages not published: the publish queue full, or the link down",
                index::CLUSTER_DROPPED,
            ),
            (
                "sockserv_chat_cluster_gaps",
                "Chat messages of other instances found missing by their sequence numbers",
                index::CLUSTER_GAPS,
            ),
        ];
        for (name, help, at) in series {
            per_server(e, (name, help), clusters, count(at))?;
        }
        Ok(())
    }

    fn process(&self, e: &mut DescriptorEncoder<'_>) -> Result {
        let help = "Reloads of the config, by result";
        let mut metric =
            e.encode_descriptor("sockserv_reloads", help, None, MetricType::Counter)?;
        for (result, value) in ["success", "failure"].into_iter().zip(self.reloads) {
            counter(&mut metric.encode_family(&[("result", result)])?, value)?;
        }
        let help = "Plugins that could not be loaded";
        let name = "sockserv_plugin_load_failures";
        let mut metric = e.encode_descriptor(name, help, None, MetricType::Counter)?;
        counter(&mut metric, self.plugin_load_failures)?;
        let help = "The running sockserv's version (the value is always 1)";
        let name = "sockserv_build_info";
        let mut metric = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
        let version = [("version", env!("CARGO_PKG_VERSION"))];
        metric.encode_family(&version)?.encode_gauge(&1u64)
    }
}
