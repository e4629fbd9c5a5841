//! The command line, in two phases like sockserv's config: clap reads the flags ([`Args`]), then
//! [`Args::plan`] checks them together and settles every bound, so the rest of the program works from
//! a [`Plan`] in which the run's length and size are always finite.

use std::net::IpAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::target::Target;

/// The default measured duration when neither `--duration` nor `--requests` is given.
const DEFAULT_DURATION: f64 = 5.0;
/// The longest run, warm-up included, whatever the flags say: this is a benchmark, not a soak test.
pub const MAX_RUN: f64 = 60.0;
/// The longest hold (`hold --duration`): long enough for other runs to measure while it lasts.
pub const MAX_HOLD: f64 = 600.0;
/// Connections one hold may open: about what one local address can open to one server port
/// (Linux's default ephemeral range, 32768–60999, is 28 232 ports); more sources need more holds.
const MAX_HELD: usize = 28_232;
/// The largest hold ping: it must fit a fresh socket's send buffer in one non-blocking write.
const MAX_PING: usize = 4096;
/// More connections than this is a different tool's job (and a thread each here).
const MAX_CONNECTIONS: usize = 4096;
/// Outstanding requests per connection; deeper pipelines measure the socket buffers, not the server.
const MAX_DEPTH: usize = 1024;
/// The largest payload: 16 MiB.
const MAX_SIZE: usize = 16 << 20;
/// The largest UDP payload that fits one datagram.
const MAX_UDP_SIZE: usize = 65_507;
/// Chat senders; each is a connection plus a thread draining it.
const MAX_SENDERS: usize = 256;
/// Chat `--rate`'s ceiling, messages a second.
const MAX_RATE: f64 = 1_000_000.0;

/// sockserv's load generator: round trips against an echo, search or chat server on loopback, or
/// connections held open and idle (`hold`).
#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about = "sockserv's load generator: bounded echo, search or chat load on a loopback server, or idle connections held (hold)",
    long_about = None
)]
pub struct Args {
    /// What to send: echo payloads, search requests, chat fan-out, or nothing (hold connections)
    #[arg(value_enum)]
    pub mode: Mode,

    /// The server: tcp://IP:PORT, unix:///PATH or udp://IP:PORT (echo only)
    pub target: String,

    /// Concurrent connections, each a thread (chat: listeners; hold: connections held, one thread)
    #[arg(short = 'c', long, default_value_t = 1)]
    pub connections: usize,

    /// Payload bytes per request (echo) or per message (chat; at least the token's length)
    #[arg(long, default_value_t = 64)]
    pub size: usize,

    /// Requests in flight per connection (chat: messages per sender not yet delivered to all; hold:
    /// connections being opened at once)
    #[arg(long, default_value_t = 1)]
    pub depth: usize,

    /// Open a new connection for every request (echo and search over streams)
    #[arg(long)]
    pub reconnect: bool,

    /// Seconds to measure [default: 5, or until --requests; at most 60 with the warm-up] (hold:
    /// seconds to hold once opened, at most 600)
    #[arg(long)]
    pub duration: Option<f64>,

    /// Stop after this many measured requests (chat: messages sent)
    #[arg(long)]
    pub requests: Option<u64>,

    /// Seconds of load before measuring starts
    #[arg(long, default_value_t = 0.0)]
    pub warmup: f64,

    /// Report this process's CPU time (and its descendants') over the measured window
    #[arg(long)]
    pub server_pid: Option<u32>,

    /// Print one JSON object instead of the text report
    #[arg(long)]
    pub json: bool,

    /// Chat: connections that send (each also drains what the server sends it)
    #[arg(long, default_value_t = 1)]
    pub senders: usize,

    /// Seconds one connect, read or write may take before it counts as an error
    #[arg(long, default_value_t = 2.0)]
    pub timeout: f64,

    /// Connect from this local IP (TCP only), e.g. 127.0.0.2: a source of its own to the server
    #[arg(long)]
    pub bind: Option<IpAddr>,

    /// Hold: send one --size-byte echo request on each connection and wait for its reply before
    /// going quiet (the server has then accepted and served it)
    #[arg(long)]
    pub ping: bool,

    /// Chat: a second instance of the same cluster; every other listener joins there, and only
    /// those listeners' deliveries (the ones that crossed instances) are measured
    #[arg(long)]
    pub spread: Option<String>,

    /// Chat: messages a second, across all senders (the window still applies) [default: as fast
    /// as the window allows]
    #[arg(long)]
    pub rate: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    Echo,
    Search,
    Chat,
    Hold,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Echo => "echo",
            Mode::Search => "search",
            Mode::Chat => "chat",
            Mode::Hold => "hold",
        }
    }
}

/// A checked run: every flag consistent, every bound finite.
#[derive(Debug, Clone)]
pub struct Plan {
    pub mode: Mode,
    pub target: Target,
    pub connections: usize,
    pub size: usize,
    pub depth: usize,
    pub reconnect: bool,
    pub warmup: Duration,
    /// The measured window's longest length (the run ends earlier if `requests` are done).
    pub duration: Duration,
    pub requests: Option<u64>,
    pub server_pid: Option<u32>,
    pub json: bool,
    pub senders: usize,
    pub timeout: Duration,
    /// The local address TCP connections are made from; `None`: the system's choice.
    pub bind: Option<IpAddr>,
    /// Hold: one echo round trip on each connection before it goes quiet.
    pub ping: bool,
    /// Chat `--spread`: the second instance every other listener joins.
    pub spread: Option<Target>,
    /// Chat `--rate`: messages a second across all senders.
    pub rate: Option<f64>,
}

impl Plan {
    /// A stream connection to the target, from `--bind` if given, within `--timeout`.
    pub fn connect(&self) -> std::io::Result<crate::target::Conn> {
        self.target.connect_from(self.bind, self.timeout)
    }

    /// Chat listener `i`'s connection: to `--spread` for every odd `i` when given.
    pub fn connect_listener(&self, i: usize) -> std::io::Result<crate::target::Conn> {
        match &self.spread {
            Some(spread) if i % 2 == 1 => spread.connect_from(self.bind, self.timeout),
            _ => self.connect(),
        }
    }

    /// Whether listener `i`'s deliveries are measured: all, or with `--spread` those across.
    pub fn measures(&self, i: usize) -> bool {
        self.spread.is_none() || i % 2 == 1
    }
}

impl Args {
    /// Checks the flags together; the message says which flag to change.
    pub fn plan(&self) -> Result<Plan, String> {
        let target: Target = self.target.parse()?;
        let warmup = seconds("--warmup", self.warmup, false)?;
        let hold = self.mode == Mode::Hold;
        let duration = match (self.duration, self.requests) {
            (Some(d), _) if hold => seconds_up_to("--duration", d, true, MAX_HOLD)?,
            (Some(d), _) => seconds("--duration", d, true)?,
            (None, Some(_)) => MAX_RUN - self.warmup,
            (None, None) => DEFAULT_DURATION,
        };
        if !hold && self.warmup + duration > MAX_RUN {
            return Err(format!(
                "--warmup + --duration is {}s: a run is at most {MAX_RUN}s",
                self.warmup + duration
            ));
        }
        let timeout = seconds("--timeout", self.timeout, true)?;
        let max_connections = if hold { MAX_HELD } else { MAX_CONNECTIONS };
        within("-c/--connections", self.connections, 1, max_connections)?;
        within("--depth", self.depth, 1, MAX_DEPTH)?;
        within("--size", self.size, 1, MAX_SIZE)?;
        within("--senders", self.senders, 1, MAX_SENDERS)?;
        if self.requests == Some(0) {
            return Err("--requests must be at least 1".into());
        }
        self.check_mode(&target)?;
        let spread = self.check_chat()?;
        Ok(Plan {
            mode: self.mode,
            target,
            connections: self.connections,
            size: self.size,
            depth: self.depth,
            reconnect: self.reconnect,
            warmup: Duration::from_secs_f64(warmup),
            duration: Duration::from_secs_f64(duration),
            requests: self.requests,
            server_pid: self.server_pid,
            json: self.json,
            senders: self.senders,
            timeout: Duration::from_secs_f64(timeout),
            bind: self.bind,
            ping: self.ping,
            spread,
            rate: self.rate,
        })
    }

    /// The combinations a mode cannot run.
    fn check_mode(&self, target: &Target) -> Result<(), String> {
        match (self.mode, target) {
            (Mode::Search | Mode::Chat, Target::Udp(_)) => {
                return Err(format!(
                    "{} runs over streams (tcp:// or unix://)",
                    self.mode.name()
                ))
            }
            (Mode::Echo, Target::Udp(_)) if self.depth > 1 => {
                return Err("--depth > 1 needs a stream: UDP echo is one datagram at a time".into())
            }
            (Mode::Echo, Target::Udp(_)) if self.size > MAX_UDP_SIZE => {
                return Err(format!("--size over UDP is at most {MAX_UDP_SIZE} bytes"))
            }
            (Mode::Chat, _) if self.reconnect => {
                return Err("--reconnect does not apply to chat".into())
            }
            (Mode::Hold, _) => self.check_hold(target)?,
            _ => {}
        }
        if self.ping && self.mode != Mode::Hold {
            return Err("--ping applies to hold only".into());
        }
        if self.reconnect && self.depth > 1 {
            return Err("--reconnect sends one request per connection: use --depth 1".into());
        }
        if self.reconnect && matches!(target, Target::Udp(_)) {
            return Err("--reconnect needs a stream (tcp:// or unix://)".into());
        }
        if let Some(ip) = self.bind {
            match target {
                Target::Tcp(addr) if addr.is_ipv4() == ip.is_ipv4() => {}
                Target::Tcp(_) => {
                    return Err(format!("--bind {ip}: not the target's address family"))
                }
                _ => return Err("--bind applies to tcp:// targets only".into()),
            }
        }
        Ok(())
    }
}

impl Args {
    /// `--spread` and `--rate`: chat only, a stream target, a rate from 1 to [`MAX_RATE`].
    fn check_chat(&self) -> Result<Option<Target>, String> {
        let chat = self.mode == Mode::Chat;
        if let Some(rate) = self.rate {
            if !chat {
                return Err("--rate applies to chat only".into());
            }
            if !(rate.is_finite() && (1.0..=MAX_RATE).contains(&rate)) {
                return Err(format!(
                    "--rate must be from 1 to {MAX_RATE} messages a second"
                ));
            }
        }
        let Some(spread) = &self.spread else {
            return Ok(None);
        };
        if !chat {
            return Err("--spread applies to chat only".into());
        }
        let spread: Target = spread.parse()?;
        if !spread.is_stream() {
            return Err("--spread needs a stream (tcp:// or unix://)".into());
        }
        if self.connections < 2 {
            return Err("--spread needs at least 2 listeners (-c 2)".into());
        }
        Ok(Some(spread))
    }

    /// The flags a hold takes: it sends nothing after its ping, so the load's flags do not apply.
    fn check_hold(&self, target: &Target) -> Result<(), String> {
        if !target.is_stream() {
            return Err("hold runs over streams (tcp:// or unix://)".into());
        }
        let unused = [
            ("--reconnect", self.reconnect),
            ("--requests", self.requests.is_some()),
            ("--warmup", self.warmup > 0.0),
            ("--server-pid", self.server_pid.is_some()),
            ("--senders", self.senders != 1),
        ];
        if let Some((flag, _)) = unused.iter().find(|(_, given)| *given) {
            return Err(format!("{flag} does not apply to hold"));
        }
        if self.ping && self.size > MAX_PING {
            return Err(format!("hold --ping --size is at most {MAX_PING} bytes"));
        }
        Ok(())
    }
}

/// A finite number of seconds up to [`MAX_RUN`]; more than zero if `positive`.
fn seconds(flag: &str, value: f64, positive: bool) -> Result<f64, String> {
    seconds_up_to(flag, value, positive, MAX_RUN)
}

/// A finite number of seconds up to `max`; more than zero if `positive`.
fn seconds_up_to(flag: &str, value: f64, positive: bool, max: f64) -> Result<f64, String> {
    let low_ok = if positive { value > 0.0 } else { value >= 0.0 };
    if value.is_finite() && low_ok && value <= max {
        Ok(value)
    } else {
        let low = if positive { "above 0" } else { "from 0" };
        Err(format!(
            "{flag} {value}: expected seconds {low} up to {max}"
        ))
    }
}

fn within(flag: &str, value: usize, min: usize, max: usize) -> Result<(), String> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(format!("{flag} {value}: expected {min} to {max}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(args: &[&str]) -> Result<Plan, String> {
        let argv = std::iter::once("loadgen").chain(args.iter().copied());
        Args::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .plan()
    }

    #[test]
    fn defaults_are_bounded() {
        let p = plan(&["echo", "tcp://127.0.0.1:1"]).unwrap();
        assert_eq!(p.duration, Duration::from_secs(5));
        assert_eq!((p.connections, p.size, p.depth), (1, 64, 1));
        let p = plan(&[
            "echo",
            "tcp://127.0.0.1:1",
            "--requests",
            "10",
            "--warmup",
            "1",
        ])
        .unwrap();
        assert_eq!(p.duration, Duration::from_secs(59));
    }

    #[test]
    fn refuses_unbounded_or_inconsistent_runs() {
        for args in [
            &["echo", "tcp://127.0.0.1:1", "--duration", "61"][..],
            &[
                "echo",
                "tcp://127.0.0.1:1",
                "--duration",
                "50",
                "--warmup",
                "11",
            ],
            &["echo", "tcp://127.0.0.1:1", "--duration", "inf"],
            &["echo", "tcp://127.0.0.1:1", "--requests", "0"],
            &["echo", "tcp://127.0.0.1:1", "-c", "0"],
            &["echo", "udp://127.0.0.1:1", "--depth", "2"],
            &["echo", "tcp://127.0.0.1:1", "--reconnect", "--depth", "2"],
            &["search", "udp://127.0.0.1:1"],
            &["chat", "tcp://127.0.0.1:1", "--reconnect"],
            &["echo", "unix:///tmp/x.sock", "--bind", "127.0.0.2"],
            &["echo", "tcp://127.0.0.1:1", "--bind", "::1"],
            &["echo", "tcp://127.0.0.1:1", "--ping"],
            &["hold", "udp://127.0.0.1:1"],
            &["hold", "tcp://127.0.0.1:1", "--duration", "601"],
            &["hold", "tcp://127.0.0.1:1", "-c", "30000"],
            &["hold", "tcp://127.0.0.1:1", "--requests", "5"],
            &["hold", "tcp://127.0.0.1:1", "--ping", "--size", "5000"],
            &["echo", "tcp://127.0.0.1:1", "--rate", "10"],
            &["chat", "tcp://127.0.0.1:1", "--rate", "0"],
            &["echo", "tcp://127.0.0.1:1", "--spread", "tcp://127.0.0.1:2"],
            &[
                "chat",
                "tcp://127.0.0.1:1",
                "-c",
                "2",
                "--spread",
                "udp://127.0.0.1:2",
            ],
            &["chat", "tcp://127.0.0.1:1", "--spread", "tcp://127.0.0.1:2"],
        ] {
            assert!(plan(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn chat_may_spread_listeners_over_two_instances_at_a_rate() {
        let p = plan(&[
            "chat",
            "tcp://127.0.0.1:1",
            "-c",
            "4",
            "--spread",
            "tcp://127.0.0.1:2",
            "--rate",
            "1000",
        ])
        .unwrap();
        assert_eq!(p.rate, Some(1000.0));
        assert!(p.spread.is_some());
        let measured: Vec<bool> = (0..4).map(|i| p.measures(i)).collect();
        assert_eq!(measured, [false, true, false, true]);
    }

    #[test]
    fn a_hold_may_be_long_and_wide() {
        let p = plan(&[
            "hold",
            "tcp://127.0.0.1:1",
            "-c",
            "10000",
            "--duration",
            "300",
            "--bind",
            "127.0.0.2",
            "--ping",
        ])
        .unwrap();
        assert_eq!(
            (p.connections, p.duration),
            (10_000, Duration::from_secs(300))
        );
        assert_eq!(p.bind, Some("127.0.0.2".parse().unwrap()));
        assert!(p.ping);
    }
}
