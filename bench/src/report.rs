//! The run's figures, as a few lines for people or one JSON object for scripts (`--json`). Both carry
//! the same numbers: rate, MB/s (bytes out plus bytes in), latency percentiles in microseconds, errors
//! with the first message, and CPU time over the measured window.

use std::fmt::Write;

use crate::args::{Mode, Plan};
use crate::cpu::CpuUse;
use crate::json;
use crate::Outcome;

/// The percentiles reported, with their names.
const QUANTILES: [(&str, f64); 3] = [("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)];

pub struct Report<'a> {
    plan: &'a Plan,
    outcome: &'a Outcome,
    /// Measured seconds.
    secs: f64,
}

impl<'a> Report<'a> {
    pub fn new(plan: &'a Plan, outcome: &'a Outcome) -> Report<'a> {
        let secs = outcome.measured(plan.requests.is_some()).as_secs_f64();
        Report {
            plan,
            outcome,
            secs,
        }
    }

    fn rate(&self) -> f64 {
        self.outcome.tally.requests as f64 / self.secs
    }

    fn mb_per_s(&self) -> f64 {
        let t = &self.outcome.tally;
        (t.bytes_out + t.bytes_in) as f64 / self.secs / 1e6
    }

    fn server_cpu(&self) -> Option<Result<CpuUse, &str>> {
        self.outcome
            .cpu
            .server
            .as_ref()
            .map(|r| r.as_ref().copied().map_err(String::as_str))
    }

    /// Microseconds of server CPU per completed request (chat: per delivery).
    fn us_per_request(&self, cpu: &CpuUse) -> f64 {
        cpu.seconds * 1e6 / (self.outcome.tally.requests.max(1) as f64)
    }

    fn setup(&self) -> String {
        let p = self.plan;
        let who = match &self.outcome.chat {
            Some(c) => format!(
                "{} listeners, {} senders, window {}",
                c.listeners, c.senders, p.depth
            ),
            None => format!(
                "{} connections, depth {}{}",
                p.connections,
                p.depth,
                if p.reconnect { ", reconnect" } else { "" }
            ),
        };
        let size = match p.mode {
            Mode::Search => "search request".to_string(),
            _ => format!("{} B", p.size),
        };
        format!(
            "loadgen {} {}: {who}, {size}, {:.1} s measured after {:.1} s warm-up",
            p.mode.name(),
            p.target,
            self.secs,
            p.warmup.as_secs_f64()
        )
    }

    pub fn text(&self) -> String {
        let t = &self.outcome.tally;
        let mut out = self.setup();
        let noun = if self.outcome.chat.is_some() {
            "delivered"
        } else {
            "round trips"
        };
        if let Some(chat) = &self.outcome.chat {
            let sent_rate = chat.sent as f64 / self.secs;
            let _ = write!(out, "\n  sent          {} ({sent_rate:.0}/s)", chat.sent);
        }
        let _ = write!(out, "\n  {noun:<13} {} ({:.0}/s)", t.requests, self.rate());
        let _ = write!(
            out,
            "\n  throughput    {:.2} MB/s (out + in)",
            self.mb_per_s()
        );
        let _ = write!(out, "\n  latency      ");
        for (name, q) in QUANTILES {
            let _ = write!(out, " {name} {}  ", duration(t.latency.quantile(q)));
        }
        let _ = write!(out, " max {}", duration(t.latency.max()));
        let _ = write!(out, "\n  errors        {}", t.errors);
        if let Some((_, first)) = &t.first_error {
            let _ = write!(out, " (first: {first})");
        }
        match self.server_cpu() {
            Some(Ok(cpu)) => {
                let _ = write!(
                    out,
                    "\n  server cpu    {:.2} s ({:.2} cores), {:.1} µs/request",
                    cpu.seconds,
                    cpu.cores(),
                    self.us_per_request(&cpu)
                );
            }
            Some(Err(e)) => {
                let _ = write!(out, "\n  server cpu    unknown: {e}");
            }
            None => {}
        }
        if let Some(cpu) = &self.outcome.cpu.client {
            let _ = write!(
                out,
                "\n  loadgen cpu   {:.2} s ({:.2} cores)",
                cpu.seconds,
                cpu.cores()
            );
        }
        out
    }

    pub fn json(&self) -> String {
        let p = self.plan;
        let t = &self.outcome.tally;
        let mut f = Fields::default();
        f.str("mode", p.mode.name());
        f.str("target", &p.target.to_string());
        f.num("connections", p.connections);
        match p.mode {
            Mode::Search => f.raw("size", "null"),
            _ => f.num("size", p.size),
        }
        f.num("depth", p.depth);
        f.raw("reconnect", p.reconnect);
        f.num("warmup_s", p.warmup.as_secs_f64());
        f.num("duration_s", format!("{:.3}", self.secs));
        f.num("requests", t.requests);
        f.num("requests_per_s", format!("{:.1}", self.rate()));
        f.num("mb_per_s", format!("{:.3}", self.mb_per_s()));
        f.num("bytes_out", t.bytes_out);
        f.num("bytes_in", t.bytes_in);
        for (name, q) in QUANTILES {
            let key = format!("latency_{}_us", name.replace('.', "_"));
            f.num(&key, micros(t.latency.quantile(q)));
        }
        f.num("latency_max_us", micros(t.latency.max()));
        f.num("latency_mean_us", format!("{:.1}", t.latency.mean() / 1e3));
        f.num("errors", t.errors);
        match &t.first_error {
            Some((_, e)) => f.str("first_error", e),
            None => f.raw("first_error", "null"),
        }
        if let Some(chat) = &self.outcome.chat {
            f.num("listeners", chat.listeners);
            f.num("senders", chat.senders);
            f.num("sent", chat.sent);
            f.num("sent_per_s", format!("{:.1}", chat.sent as f64 / self.secs));
        }
        match self.server_cpu() {
            Some(Ok(cpu)) => {
                f.num("server_cpu_s", format!("{:.2}", cpu.seconds));
                f.num(
                    "server_cpu_us_per_request",
                    format!("{:.2}", self.us_per_request(&cpu)),
                );
            }
            Some(Err(e)) => f.str("server_cpu_error", e),
            None => {}
        }
        if let Some(cpu) = &self.outcome.cpu.client {
            f.num("loadgen_cpu_s", format!("{:.2}", cpu.seconds));
        }
        f.finish()
    }
}

/// A flat JSON object, built field by field.
#[derive(Default)]
struct Fields(Vec<String>);

impl Fields {
    fn raw(&mut self, key: &str, value: impl std::fmt::Display) {
        self.0.push(format!("{}: {value}", json::quote(key)));
    }

    fn num(&mut self, key: &str, value: impl std::fmt::Display) {
        self.raw(key, value);
    }

    fn str(&mut self, key: &str, value: &str) {
        self.raw(key, json::quote(value));
    }

    fn finish(self) -> String {
        format!("{{{}}}", self.0.join(", "))
    }
}

fn micros(nanos: u64) -> String {
    format!("{:.1}", nanos as f64 / 1e3)
}

/// Nanoseconds in the unit that reads best.
fn duration(nanos: u64) -> String {
    let n = nanos as f64;
    if n < 1e3 {
        format!("{nanos} ns")
    } else if n < 1e6 {
        format!("{:.0} µs", n / 1e3)
    } else if n < 1e9 {
        format!("{:.2} ms", n / 1e6)
    } else {
        format!("{:.2} s", n / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_their_unit() {
        assert_eq!(duration(999), "999 ns");
        assert_eq!(duration(41_200), "41 µs");
        assert_eq!(duration(1_250_000), "1.25 ms");
        assert_eq!(duration(3_000_000_000), "3.00 s");
    }
}
