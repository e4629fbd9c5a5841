//! The hold mode's figures, as a few lines for people or one JSON object for scripts (`--json`):
//! what was opened and answered, what the server closed and after how long, what was still open.

use std::fmt::Write;

use super::HoldOutcome;
use crate::args::Plan;
use crate::histogram::Histogram;
use crate::json;

pub struct HoldReport<'a> {
    plan: &'a Plan,
    outcome: &'a HoldOutcome,
}

impl<'a> HoldReport<'a> {
    pub fn new(plan: &'a Plan, outcome: &'a HoldOutcome) -> HoldReport<'a> {
        HoldReport { plan, outcome }
    }

    fn setup(&self) -> String {
        let p = self.plan;
        let from = p.bind.map(|ip| format!(" from {ip}")).unwrap_or_default();
        let ping = if p.ping {
            format!("a {} B echo ping each", p.size)
        } else {
            "no byte sent".to_string()
        };
        format!(
            "loadgen hold {}{from}: {} connections, {ping}, {} opened at once, held up to {} s",
            p.target,
            p.connections,
            p.depth,
            p.duration.as_secs_f64()
        )
    }

    pub fn text(&self) -> String {
        let o = self.outcome;
        let mut out = self.setup();
        let _ = write!(
            out,
            "\n  opened        {} of {} in {:.2} s",
            o.opened,
            self.plan.connections,
            o.open_time.as_secs_f64()
        );
        let _ = write!(out, "\n  errors        {}", o.connect_errors);
        if let Some(first) = &o.first_error {
            let _ = write!(out, " (first: {first})");
        }
        if self.plan.ping {
            let _ = write!(
                out,
                "\n  answered      {} (wrong {}, unanswered at the end {})",
                o.answered, o.wrong_replies, o.unanswered_at_end
            );
        }
        let _ = write!(
            out,
            "\n  refused       {} closed by the server before any byte{}",
            o.refused.count(),
            spread(&o.refused, "after")
        );
        let _ = write!(
            out,
            "\n  closed        {} closed by the server after a reply{}",
            o.closed.count(),
            spread(&o.closed, "idle for")
        );
        if o.closed_mid_reply > 0 {
            let _ = write!(out, "; {} in mid-reply", o.closed_mid_reply);
        }
        let _ = write!(
            out,
            "\n  still open    {} after {:.2} s of holding",
            o.open_at_end,
            o.held.as_secs_f64()
        );
        out
    }

    pub fn json(&self) -> String {
        let p = self.plan;
        let o = self.outcome;
        let mut f = vec![
            field("mode", json::quote("hold")),
            field("target", json::quote(&p.target.to_string())),
            field(
                "bind",
                p.bind
                    .map_or("null".into(), |ip| json::quote(&ip.to_string())),
            ),
            field("connections", p.connections),
            field(
                "ping_size",
                if p.ping {
                    p.size.to_string()
                } else {
                    "null".into()
                },
            ),
            field("depth", p.depth),
            field("duration_s", p.duration.as_secs_f64()),
            field("opened", o.opened),
            field("open_s", format!("{:.3}", o.open_time.as_secs_f64())),
            field("errors", o.connect_errors),
            field(
                "first_error",
                o.first_error.as_deref().map_or("null".into(), json::quote),
            ),
            field("answered", o.answered),
            field("wrong_replies", o.wrong_replies),
            field("unanswered_at_end", o.unanswered_at_end),
            field("refused", o.refused.count()),
            field("closed", o.closed.count()),
            field("closed_mid_reply", o.closed_mid_reply),
            field("open_at_end", o.open_at_end),
            field("held_s", format!("{:.3}", o.held.as_secs_f64())),
        ];
        for (name, h) in [("refused_after", &o.refused), ("closed_idle", &o.closed)] {
            for (stat, nanos) in stats(h) {
                f.push(field(&format!("{name}_{stat}_s"), seconds(nanos)));
            }
        }
        format!("{{{}}}", f.join(", "))
    }
}

fn field(key: &str, value: impl std::fmt::Display) -> String {
    format!("{}: {value}", json::quote(key))
}

/// min, p50, p99 and max of `h`, in nanoseconds; `None` each when it is empty.
fn stats(h: &Histogram) -> [(&'static str, Option<u64>); 4] {
    let some = |v: u64| (h.count() > 0).then_some(v);
    [
        ("min", some(h.min())),
        ("p50", some(h.quantile(0.5))),
        ("p99", some(h.quantile(0.99))),
        ("max", some(h.max())),
    ]
}

/// Seconds with millisecond precision, or JSON's null.
fn seconds(nanos: Option<u64>) -> String {
    nanos.map_or("null".into(), |n| format!("{:.3}", n as f64 / 1e9))
}

/// ": after min 0.001 s, p50 ..., max ... s" for a non-empty histogram.
fn spread(h: &Histogram, what: &str) -> String {
    if h.count() == 0 {
        return String::new();
    }
    let [min, p50, p99, max] = stats(h).map(|(_, v)| seconds(v));
    format!(": {what} min {min} s, p50 {p50} s, p99 {p99} s, max {max} s")
}
