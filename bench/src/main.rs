//! `loadgen`, sockserv's own load generator: echo round trips (TCP, Unix stream, UDP), search requests
//! (the realpython protocol) and chat fan-out, against a server on loopback, for a bounded time or
//! count. It reports round trips per second, MB/s, latency percentiles from a bounded histogram,
//! errors, and the server's CPU time per request when given its pid.
//!
//! The modes live in [`roundtrip`] (echo, search) and [`chat`]; both hand back an [`Outcome`] that
//! [`report`] prints as text or JSON. [`hold`] is the odd one out: it sends no load but holds
//! connections open and idle (the attacker of the limits benchmark), with a report of its own. Exit codes follow sockserv's: 0 ok, 1 the run failed (nobody
//! listening, or no request completed), 2 bad usage.

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM};

mod args;
mod chat;
mod cpu;
mod echo;
mod histogram;
mod hold;
mod json;
mod report;
mod roundtrip;
mod search;
mod tally;
mod target;

use args::{Args, Mode, Plan};

/// What a run measured, whatever the mode.
#[derive(Debug)]
pub struct Outcome {
    pub clock: tally::Clock,
    pub tally: tally::Tally,
    pub cpu: cpu::Cpu,
    /// The chat mode's own counts.
    pub chat: Option<ChatFigures>,
}

/// Chat fan-out: who took part and how many measured messages were sent.
#[derive(Debug, Clone, Copy)]
pub struct ChatFigures {
    pub listeners: usize,
    pub senders: usize,
    pub sent: u64,
}

impl Outcome {
    pub fn new(clock: tally::Clock, tally: tally::Tally, cpu: cpu::Cpu) -> Outcome {
        Outcome {
            clock,
            tally,
            cpu,
            chat: None,
        }
    }

    /// The measured window: to the deadline for a timed run (so a stalled server shows as slow), to
    /// the last completion for a count-bound run that finished early.
    pub fn measured(&self, count_bound: bool) -> Duration {
        let last = self.tally.last_done.unwrap_or(self.clock.measure_from);
        let end = if count_bound {
            last
        } else {
            last.max(self.clock.deadline)
        };
        end.saturating_duration_since(self.clock.measure_from)
            .max(Duration::from_micros(1))
    }
}

/// Runs the plan's load mode (hold has its own outcome: see [`hold::run`]).
pub fn run(plan: &Plan) -> anyhow::Result<Outcome> {
    match plan.mode {
        Mode::Chat => chat::run(plan),
        Mode::Echo | Mode::Search => roundtrip::run(plan),
        Mode::Hold => anyhow::bail!("hold is not a load: hold::run runs it"),
    }
}

/// Runs a hold and prints its report: exit 1 if no connection could be opened. SIGTERM and SIGINT
/// end the hold early, with the report.
fn hold_main(plan: &Plan) -> ExitCode {
    for signal in [SIGTERM, SIGINT] {
        if let Err(e) = signal_hook::flag::register(signal, &hold::STOP) {
            eprintln!("loadgen: cannot handle signal {signal}: {e}");
            return ExitCode::from(1);
        }
    }
    match hold::run(plan) {
        Ok(outcome) => {
            let report = hold::HoldReport::new(plan, &outcome);
            println!(
                "{}",
                if plan.json {
                    report.json()
                } else {
                    report.text()
                }
            );
            if outcome.opened == 0 {
                eprintln!("loadgen: no connection could be opened");
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let plan = match args.plan() {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    if plan.mode == Mode::Hold {
        return hold_main(&plan);
    }
    let started = Instant::now();
    match run(&plan) {
        Ok(outcome) => {
            let report = report::Report::new(&plan, &outcome);
            println!(
                "{}",
                if plan.json {
                    report.json()
                } else {
                    report.text()
                }
            );
            if outcome.tally.requests == 0 {
                eprintln!(
                    "loadgen: no request completed in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::from(1)
        }
    }
}
