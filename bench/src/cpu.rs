//! CPU time over the measured window, from `/proc`: the server's (`--server-pid`: the process, every
//! thread of it, and its descendants, so a forking server's children count) and the load
//! generator's own, which shares the machine and so bounds what any server can show.
//!
//! A process's figure is `utime + stime + cutime + cstime` from `/proc/PID/stat`: children it has
//! reaped are in its `c*` fields, live ones are found by walking the ppid links of every process, so
//! a child that exits during the run is counted once either way.

use std::collections::HashMap;
use std::fs;
use std::time::{Duration, Instant};

/// The unit of the times in `/proc/PID/stat`: USER_HZ, which Linux fixes at 100 for user space on
/// every architecture (whatever the kernel's own HZ).
const USER_HZ: f64 = 100.0;

/// One process's line of `/proc/PID/stat`, the fields used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    ppid: u32,
    /// utime + stime + cutime + cstime, in ticks.
    ticks: u64,
}

/// Reads the fields after the command name, which is in parentheses and may hold spaces or `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
    let num = |i: usize| fields.get(i)?.parse::<u64>().ok();
    let ticks = num(11)? + num(12)? + num(13)? + num(14)?;
    Some(Stat {
        ppid: u32::try_from(num(1)?).ok()?,
        ticks,
    })
}

fn read_stat(pid: &str) -> Option<Stat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Ticks used by `root` and every live descendant; `None` when `root` is gone.
fn tree_ticks(root: u32) -> Option<u64> {
    let root_stat = read_stat(&root.to_string())?;
    let mut children: HashMap<u32, Vec<(u32, u64)>> = HashMap::new();
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if let Some(stat) = read_stat(&pid.to_string()) {
            children
                .entry(stat.ppid)
                .or_default()
                .push((pid, stat.ticks));
        }
    }
    let mut total = root_stat.ticks;
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        for &(child, ticks) in children.get(&pid).map(Vec::as_slice).unwrap_or_default() {
            total += ticks;
            todo.push(child);
        }
    }
    Some(total)
}

fn own_ticks() -> Option<u64> {
    read_stat("self").map(|s| s.ticks)
}

/// CPU seconds used over a window, and the window.
#[derive(Debug, Clone, Copy)]
pub struct CpuUse {
    pub seconds: f64,
    pub wall: Duration,
}

impl CpuUse {
    /// As a share of one core: 2.0 is two cores busy.
    pub fn cores(&self) -> f64 {
        self.seconds / self.wall.as_secs_f64().max(1e-9)
    }
}

/// What the window measured: the server's (if asked for) and the load generator's own.
#[derive(Debug, Clone, Default)]
pub struct Cpu {
    pub server: Option<Result<CpuUse, String>>,
    pub client: Option<CpuUse>,
}

/// Samples at the start of the measured window; [`Meter::stop`] samples again.
pub struct Meter {
    pid: Option<u32>,
    server: Option<Result<u64, String>>,
    client: Option<u64>,
    started: Instant,
}

impl Meter {
    pub fn start(pid: Option<u32>) -> Meter {
        Meter {
            pid,
            server: pid.map(|p| tree_ticks(p).ok_or_else(|| format!("no process {p}"))),
            client: own_ticks(),
            started: Instant::now(),
        }
    }

    pub fn stop(self) -> Cpu {
        let wall = self.started.elapsed();
        let used = |before: u64, after: u64| CpuUse {
            seconds: after.saturating_sub(before) as f64 / USER_HZ,
            wall,
        };
        let server = match (self.server, self.pid) {
            (Some(Ok(before)), Some(pid)) => Some(
                tree_ticks(pid)
                    .map(|after| used(before, after))
                    .ok_or_else(|| format!("process {pid} ended during the run")),
            ),
            (Some(Err(e)), _) => Some(Err(e)),
            _ => None,
        };
        let client = self.client.zip(own_ticks()).map(|(b, a)| used(b, a));
        Cpu { server, client }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_whose_name_has_spaces_and_parens() {
        let line =
            "4242 (my (odd) server) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 9 0";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                ppid: 17,
                ticks: 250 + 50 + 7 + 3
            })
        );
        assert_eq!(parse_stat("1 (x) S"), None);
    }

    #[test]
    fn measures_this_process_and_counts_a_child() {
        let me = std::process::id();
        let before = tree_ticks(me).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let during = tree_ticks(me).unwrap();
        child.wait().unwrap();
        assert!(during >= before);
        let meter = Meter::start(Some(me));
        let cpu = meter.stop();
        assert!(cpu.server.unwrap().is_ok());
        assert!(cpu.client.is_some());
        assert!(Meter::start(Some(u32::MAX)).stop().server.unwrap().is_err());
    }
}
