use std::time::Duration;

use super::*;

/// The value of the series `name{labels...}` in `text`, matched by its exact line start.
fn value(text: &str, series: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(str::to_string)
}

#[test]
fn a_server_s_counts_come_out_with_its_labels() {
    let metrics = ServerMetrics::for_server("unit \"quoted\"");
    metrics.set_labels("echo", SocketKind::Tcp, StrategyKind::Threading);
    let first = metrics.accepted();
    assert_eq!(metrics.accepted(), ConnId(first.0 + 1));
    metrics.refused(Refusal::MaxConnections);
    metrics.opened();
    metrics.received(5);
    metrics.sent(7);
    metrics.closed(CloseReason::IdleTimeout, Duration::from_millis(20));
    metrics.handler_panic();
    let text = render();
    let labels = r#"server="unit \"quoted\"",handler="echo",transport="tcp",strategy="threading""#;
    let get = |name: &str, extra: &str| value(&text, &format!("{name}{{{labels}{extra}}}"));
    assert_eq!(
        get("sockserv_connections_accepted_total", ""),
        Some("2".into())
    );
    assert_eq!(get("sockserv_connections_active", ""), Some("0".into()));
    let refused = ",reason=\"max_connections\"";
    assert_eq!(
        get("sockserv_connections_refused_total", refused),
        Some("1".into())
    );
    let closed = ",reason=\"idle_timeout\"";
    assert_eq!(
        get("sockserv_connections_closed_total", closed),
        Some("1".into())
    );
    assert_eq!(get("sockserv_received_bytes_total", ""), Some("5".into()));
    assert_eq!(get("sockserv_sent_bytes_total", ""), Some("7".into()));
    assert_eq!(get("sockserv_handler_panics_total", ""), Some("1".into()));
    let bucket = |le: &str| {
        get(
            "sockserv_connection_duration_seconds_bucket",
            &format!(",le=\"{le}\""),
        )
    };
    assert_eq!(bucket("0.01"), Some("0".into()));
    assert_eq!(bucket("0.05"), Some("1".into()));
    assert_eq!(bucket("+Inf"), Some("1".into()));
    assert_eq!(
        get("sockserv_connection_duration_seconds_count", ""),
        Some("1".into())
    );
    assert_eq!(
        get("sockserv_connection_duration_seconds_sum", ""),
        Some("0.02".into())
    );
    assert!(
        get("sockserv_datagrams_received_total", "").is_none(),
        "a stream server"
    );
    assert!(
        get("sockserv_chat_messages_delivered_total", "").is_none(),
        "not a chat"
    );
    assert!(text.contains("sockserv_build_info{version="), "{text}");
    assert!(
        text.contains("# TYPE sockserv_connections_closed_total counter"),
        "{text}"
    );
}

#[test]
fn an_unlabelled_server_is_not_exported() {
    let metrics = ServerMetrics::for_server("claimed by a check only");
    metrics.opened();
    assert!(!render().contains("claimed by a check only"));
}

#[test]
fn datagram_and_chat_series_appear_where_they_apply() {
    let metrics = ServerMetrics::for_server("unit-udp");
    metrics.set_labels("echo", SocketKind::Udp, StrategyKind::Sync);
    metrics.datagram_received(10);
    metrics.datagram_dropped(DatagramDrop::Oversized);
    let chat = ServerMetrics::for_server("unit-chat");
    chat.set_labels("chat", SocketKind::Tcp, StrategyKind::Reactor);
    chat.has_chat();
    chat.chat_delivered(3);
    chat.chat_dropped(2);
    let text = render();
    let udp = r#"server="unit-udp",handler="echo",transport="udp",strategy="sync""#;
    assert_eq!(
        value(
            &text,
            &format!("sockserv_datagrams_received_total{{{udp}}}")
        ),
        Some("1".into())
    );
    let dropped = format!("sockserv_datagrams_dropped_total{{{udp},reason=\"oversized\"}}");
    assert_eq!(value(&text, &dropped), Some("1".into()));
    assert!(value(
        &text,
        &format!("sockserv_connections_accepted_total{{{udp}}}")
    )
    .is_none());
    let chat = r#"server="unit-chat",handler="chat",transport="tcp",strategy="reactor""#;
    let delivered = format!("sockserv_chat_messages_delivered_total{{{chat}}}");
    assert_eq!(value(&text, &delivered), Some("3".into()));
    let dropped = format!("sockserv_chat_messages_dropped_total{{{chat}}}");
    assert_eq!(value(&text, &dropped), Some("2".into()));
}

#[test]
fn cluster_series_appear_for_a_chat_in_a_cluster_only() {
    let cluster = ServerMetrics::for_server("unit-cluster");
    cluster.set_labels("chat", SocketKind::Tcp, StrategyKind::Threading);
    cluster.has_chat();
    cluster.has_cluster();
    cluster.cluster_link(true);
    cluster.cluster_published(5);
    cluster.cluster_received(4);
    cluster.cluster_dropped(3);
    cluster.cluster_gaps(2);
    let lone = ServerMetrics::for_server("unit-lone-chat");
    lone.set_labels("chat", SocketKind::Tcp, StrategyKind::Threading);
    lone.has_chat();
    let text = render();
    let labels = r#"server="unit-cluster",handler="chat",transport="tcp",strategy="threading""#;
    for (series, want) in [
        ("sockserv_chat_cluster_link_up", "1"),
        ("sockserv_chat_cluster_published_total", "5"),
        ("sockserv_chat_cluster_received_total", "4"),
        ("sockserv_chat_cluster_dropped_total", "3"),
        ("sockserv_chat_cluster_gaps_total", "2"),
    ] {
        let got = value(&text, &format!("{series}{{{labels}}}"));
        assert_eq!(got, Some(want.into()), "{series}");
    }
    let lone = r#"server="unit-lone-chat",handler="chat",transport="tcp",strategy="threading""#;
    assert!(value(&text, &format!("sockserv_chat_cluster_link_up{{{lone}}}")).is_none());
    cluster.cluster_link(false);
    let labelled = format!("sockserv_chat_cluster_link_up{{{labels}}}");
    assert_eq!(value(&render(), &labelled), Some("0".into()));
}

#[test]
fn a_connection_s_bytes_reach_the_counter_every_flush_bytes_and_at_its_close() {
    let metrics = ServerMetrics::for_server("unit-tally");
    let mut tally = Tally::received();
    let counted = || metrics.slot.get(index::BYTES_RECEIVED);
    metrics.count(&mut tally, FLUSH_BYTES - 1);
    assert_eq!(counted(), 0, "gathered, not yet added");
    metrics.count(&mut tally, 2);
    assert_eq!(counted(), FLUSH_BYTES + 1);
    metrics.count(&mut tally, 5);
    metrics.flush(&mut tally);
    assert_eq!(counted(), FLUSH_BYTES + 6);
    assert_eq!(tally.total, FLUSH_BYTES + 6);
    metrics.flush(&mut tally);
    assert_eq!(counted(), FLUSH_BYTES + 6, "nothing twice");
}

/// What the counting costs per echo round trip and per connection, on two threads counting for
/// one server at once (so the shared cache line moves between cores as under load): bench/
/// RESULTS.md ("Metrics cost") sets it against a round trip's and a connection's server CPU.
/// `cargo test --release -p sockserv-framework -- --ignored --nocapture counting_cost`
#[test]
#[ignore = "a measurement, not a check: run it in release"]
fn counting_cost() {
    use std::hint::black_box;
    use std::time::Instant;
    const ROUND_TRIPS: u64 = 20_000_000;
    const CONNECTIONS: u64 = 2_000_000;
    let metrics = ServerMetrics::for_server("unit-cost");
    // The best of five, each on two threads at once: ns per operation.
    let measure = |per_thread: u64, work: &(dyn Fn(u64) + Sync)| -> f64 {
        (0..5)
            .map(|_| {
                let started = Instant::now();
                std::thread::scope(|scope| {
                    for _ in 0..2 {
                        scope.spawn(|| work(per_thread));
                    }
                });
                started.elapsed().as_secs_f64() * 1e9 / per_thread as f64
            })
            .fold(f64::INFINITY, f64::min)
    };
    // A round trip of 64 bytes: one read and one write counted.
    let round_trip = measure(ROUND_TRIPS, &|n| {
        let (mut read, mut written) = (Tally::received(), Tally::sent());
        for _ in 0..n {
            metrics.count(&mut read, black_box(64));
            metrics.count(&mut written, black_box(64));
        }
        metrics.flush(&mut read);
        metrics.flush(&mut written);
    });
    // The same, were every read and write added to the shared counters at once.
    let shared_adds = measure(ROUND_TRIPS, &|n| {
        for _ in 0..n {
            metrics.received(black_box(64));
            metrics.sent(black_box(64));
        }
    });
    // A connection: accepted (its id), opened, 64 bytes each way, closed with its duration.
    let connection = measure(CONNECTIONS, &|n| {
        for _ in 0..n {
            black_box(metrics.accepted());
            metrics.opened();
            let (mut read, mut written) = (Tally::received(), Tally::sent());
            metrics.count(&mut read, black_box(64));
            metrics.count(&mut written, black_box(64));
            metrics.flush(&mut read);
            metrics.flush(&mut written);
            metrics.closed(CloseReason::Eof, black_box(Duration::from_micros(150)));
        }
    });
    println!(
        "counting per round trip: {round_trip:.2} ns (adding each read and write to the shared \
         counters: {shared_adds:.2} ns); per connection: {connection:.1} ns"
    );
}
