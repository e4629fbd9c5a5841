//! Giving memory back to the kernel once a peak of connections has passed.
//!
//! A server that held 10 000 connections and then closed them frees their memory, but freeing is
//! not returning: glibc's malloc keeps what was freed for reuse, and the server's own tables keep
//! the capacity their peak needed. Measured (bench/RESULTS.md, the limits section), resident memory
//! stayed at the peak minutes later: +160 MiB under threading, +4 MiB under the reactor. Three
//! things bring it back, each bounded and paid only when the load falls, never per request:
//!
//! - **One malloc arena** ([`limit_malloc_arenas`], called by `sockserv serve` before any thread
//!   starts). glibc gives each thread that contends for the allocator an arena of its own, up to
//!   8 per core; `malloc_trim` returns the free pages inside an arena, but the free space at the top
//!   of a thread's arena (where nearly everything ends up once the connections are gone) only goes
//!   back when a large free happens to land there, which after a mass close it often never does: 16
//!   arenas kept 10.9 MB each after 10 000 connections under threading, `malloc_trim` returned none
//!   of it. With one arena, `malloc_trim` returns all of it. Each thread keeps its own cache of
//!   small blocks (glibc's tcache), so sharing the arena costs a lock only on the larger
//!   allocations, which sockserv makes per connection, not per request. An operator's own
//!   `MALLOC_ARENA_MAX` is left as it is.
//! - **`malloc_trim(0)` when the open count falls** ([`connection_opened`], [`connection_closed`],
//!   [`give_back_if_due`]). The process counts its open connections (every server's, as the
//!   limits' tickets come and go). When the count falls to a quarter ([`GIVE_BACK_FALL`]) of its
//!   peak since the last give-back, and that peak was at least [`GIVE_BACK_MIN_PEAK`], a give-back
//!   is due; after a give-back the count must fall by the same factor again, so a fall from 10 000
//!   to none costs five trims (at 2 500, 625, 156, 39 and 0 open), and a server that never holds
//!   many connections never trims. The strategies call [`give_back_if_due`] where a connection's
//!   resources are released (a request's thread as it ends, a pool worker between jobs, an event
//!   loop after a turn, the forking server after reaping): one atomic load when nothing is due.
//!   Why not on a timer or at `service_actions`: the serving loop has no tick (it sleeps in poll(2)
//!   until something happens), the memory is freed where connections end, and a trim that follows
//!   the count needs no thread and no polling.
//!   A threading server gives back once more [`GIVE_BACK_SETTLE`] after its last give-back, when
//!   the threads that were exiting meanwhile have gone (see there).
//! - **Tables that shrink**: the maps and slot tables that grow with the open connections give back
//!   their capacity once three quarters of it is unused ([`shrink_sparse_map`],
//!   [`shrink_sparse_vec`]); halving on the way down like doubling on the way up keeps every
//!   insert and remove amortised O(1).
//!
//! On targets other than Linux with glibc, the allocator calls are no-ops; the counting and the
//! tables' shrinking work everywhere.

use std::collections::HashMap;
use std::hash::Hash;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

/// A peak of fewer open connections than this is not worth a give-back: what so few connections
/// free is small, and a server with a handful of clients then never trims.
pub const GIVE_BACK_MIN_PEAK: usize = 64;

/// A give-back is due once the open count has fallen to 1 / `GIVE_BACK_FALL` of its peak since
/// the last one: trims stay logarithmic in the peak, yet most of what a fall frees goes back early.
pub const GIVE_BACK_FALL: usize = 4;

/// Tables with no more room than this are never shrunk: the reallocation would cost more than the
/// little memory it returns.
pub const SHRINK_MIN_CAPACITY: usize = 64;

/// The process's open connections and whether a give-back is due (see the module doc). One per
/// process ([`TRACKER`]); tests make their own.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    /// Connections open now.
    open: AtomicUsize,
    /// The most open at once since the last give-back.
    peak: AtomicUsize,
    /// A give-back happened on the way down from a peak and the count has not reached zero since:
    /// one more is owed when it does.
    owed: AtomicBool,
    /// A give-back is due; taken by whoever calls [`Tracker::take_due`] first.
    due: AtomicBool,
}

static TRACKER: Tracker = Tracker::new();

impl Tracker {
    pub const fn new() -> Tracker {
        Tracker {
            open: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            owed: AtomicBool::new(false),
            due: AtomicBool::new(false),
        }
    }

    pub fn opened(&self) {
        let open = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        self.peak.fetch_max(open, Ordering::AcqRel);
    }

    pub fn closed(&self) {
        let open = self.open.fetch_sub(1, Ordering::AcqRel).saturating_sub(1);
        let peak = self.peak.load(Ordering::Acquire);
        if peak >= GIVE_BACK_MIN_PEAK && open <= peak / GIVE_BACK_FALL {
            // One closer wins the give-back for this peak; a concurrent new peak makes it wait for
            // the next close.
            if self
                .peak
                .compare_exchange(peak, open, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                self.owed.store(open > 0, Ordering::Release);
                self.due.store(true, Ordering::Release);
            }
        } else if open == 0 && self.owed.swap(false, Ordering::AcqRel) {
            self.due.store(true, Ordering::Release);
        }
    }

    /// Whether a give-back is due; if so it is no longer (the caller does it).
    pub fn take_due(&self) -> bool {
        self.due.load(Ordering::Acquire) && self.due.swap(false, Ordering::AcqRel)
    }
}

/// A connection was admitted (its limits ticket made).
pub(crate) fn connection_opened() {
    TRACKER.opened();
}

/// A connection ended (its limits ticket dropped).
pub(crate) fn connection_closed() {
    TRACKER.closed();
}

/// Return free memory to the kernel if the open count has fallen enough since the last time (see
/// the module doc); whether it did. Called where a strategy has let go of a connection's
/// resources; costs one atomic load when nothing is due, and a `malloc_trim(0)` (a few
/// milliseconds after a fall from thousands of connections) when something is.
pub(crate) fn give_back_if_due() -> bool {
    let due = TRACKER.take_due();
    if due {
        give_back("the open connections fell");
    }
    due
}

fn give_back(why: &str) {
    let started = Instant::now();
    let returned = trim();
    log::debug!(
        "gave free memory back to the kernel ({why}; {}) in {:.1} ms",
        if returned {
            "some returned"
        } else {
            "none to return"
        },
        started.elapsed().as_secs_f64() * 1e3
    );
}

/// How long after the last of its request threads ended a threading server that gave memory back
/// gives back once more.
///
/// A request's thread frees its last blocks as it exits, after its connection was counted closed
/// (its allocator cache, its thread-locals), and after a mass close thousands of threads are still
/// on their way out when the count reaches zero: what they free then stays with the allocator (a
/// few MiB after 10 000 connections, measured; 37 MiB once, when a loaded machine took 18 s to end
/// them all). So after a give-back, each thread that ends puts the timer off again, and it fires
/// once they have stopped ending for this long.
pub const GIVE_BACK_SETTLE: Duration = Duration::from_secs(1);

/// The one-shot timer behind [`GIVE_BACK_SETTLE`]: a timerfd the serving loop waits on beside its
/// listener (the strategy's `ready_fd`), so no thread waits for it and nothing polls.
pub(crate) struct SettleTimer {
    timer: TimerFd,
    /// Set from `arm` until it fires: while set, `extend` puts it off.
    armed: AtomicBool,
}

impl SettleTimer {
    /// # Errors
    ///
    /// The timerfd cannot be made (out of descriptors).
    pub fn new() -> io::Result<SettleTimer> {
        let flags = TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC;
        let timer = TimerFd::new(ClockId::CLOCK_MONOTONIC, flags)?;
        Ok(SettleTimer {
            timer,
            armed: AtomicBool::new(false),
        })
    }

    /// Fire [`GIVE_BACK_SETTLE`] from now (again, if it was set already).
    pub fn arm(&self) {
        self.armed.store(true, Ordering::Release);
        let after = Expiration::OneShot(TimeSpec::from_duration(GIVE_BACK_SETTLE));
        if let Err(errno) = self.timer.set(after, TimerSetTimeFlags::empty()) {
            log::debug!("cannot set the memory give-back timer: {errno}");
        }
    }

    /// If the timer is set, put it off to [`GIVE_BACK_SETTLE`] from now; one atomic load if not.
    pub fn extend(&self) {
        if self.armed.load(Ordering::Acquire) {
            self.arm();
        }
    }

    /// What the serving loop waits on.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.timer.as_fd()
    }

    /// The descriptor was readable: give memory back if the time has come (a readiness without an
    /// expiry, after a re-arm, is nothing).
    pub fn fire(&self) {
        if self.timer.wait().is_ok() {
            self.armed.store(false, Ordering::Release);
            give_back("settled");
        }
    }
}

/// Limit glibc's malloc to one arena, so that [`give_back_if_due`] can return all free memory (see
/// the module doc). Call it before the process starts any thread: arenas are made as threads first
/// allocate. Leaves an operator's `MALLOC_ARENA_MAX` alone, and does nothing on other platforms.
/// Returns whether the limit was set.
pub fn limit_malloc_arenas() -> bool {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return false;
    }
    set_arena_max(1)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn set_arena_max(arenas: libc::c_int) -> bool {
    // SAFETY: mallopt only sets a parameter of glibc's allocator, under the allocator's own lock;
    // M_ARENA_MAX takes a positive count.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_arena_max(_arenas: i32) -> bool {
    false
}

/// `malloc_trim(0)`: every arena's free pages go back to the kernel. Whether any did.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() -> bool {
    // SAFETY: malloc_trim takes the allocator's locks itself and only releases memory that no
    // allocation uses; a pad of 0 keeps nothing spare at the top of the heap.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}

/// Give back a map's capacity once three quarters of it is unused: it shrinks to twice its
/// length, so it must fall by half again (or grow by as much) before it reallocates again.
pub(crate) fn shrink_sparse_map<K: Eq + Hash, V>(map: &mut HashMap<K, V>) {
    if is_sparse(map.len(), map.capacity()) {
        map.shrink_to(map.len() * 2);
    }
}

/// [`shrink_sparse_map`] for a vector.
pub(crate) fn shrink_sparse_vec<T>(vec: &mut Vec<T>) {
    if is_sparse(vec.len(), vec.capacity()) {
        vec.shrink_to(vec.len() * 2);
    }
}

/// Whether a table of `len` entries in room for `capacity` should give room back (see
/// [`shrink_sparse_map`]).
pub(crate) fn is_sparse(len: usize, capacity: usize) -> bool {
    capacity > SHRINK_MIN_CAPACITY && len <= capacity / 4
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Open `n`, then close them one by one: the open counts at which a give-back fell due.
    fn fall(tracker: &Tracker, n: usize) -> Vec<usize> {
        (0..n).for_each(|_| tracker.opened());
        let mut due_at = Vec::new();
        for open in (0..n).rev() {
            tracker.closed();
            if tracker.take_due() {
                due_at.push(open);
            }
        }
        due_at
    }

    #[test]
    fn a_fall_from_a_peak_gives_back_a_logarithmic_number_of_times_the_last_at_zero() {
        let tracker = Tracker::new();
        assert_eq!(fall(&tracker, 10_000), [2500, 625, 156, 39, 0]);
        // The next peak starts afresh.
        assert_eq!(fall(&tracker, 100), [25, 0]);
        assert!(!tracker.take_due(), "taken once");
    }

    #[test]
    fn a_server_that_never_holds_many_connections_never_gives_back() {
        let tracker = Tracker::new();
        for _ in 0..10_000 {
            tracker.opened();
            tracker.closed();
        }
        assert!(fall(&tracker, GIVE_BACK_MIN_PEAK - 1).is_empty());
    }

    #[test]
    fn a_fall_that_stops_above_zero_owes_nothing_until_zero() {
        let tracker = Tracker::new();
        (0..1000).for_each(|_| tracker.opened());
        (0..900).for_each(|_| tracker.closed());
        assert!(tracker.take_due(), "100 open is under a quarter of 1000");
        // Up and down between 100 and 150: never a quarter of the peak, so nothing more is due...
        for _ in 0..10 {
            (0..50).for_each(|_| tracker.opened());
            (0..50).for_each(|_| tracker.closed());
            assert!(!tracker.take_due());
        }
        // ...until the count falls that far again, on the way to zero.
        (0..100).for_each(|_| tracker.closed());
        assert!(tracker.take_due());
    }

    #[test]
    fn sparse_tables_shrink_by_halves_and_small_ones_stay() {
        let mut map: HashMap<usize, usize> = (0..10_000).map(|n| (n, n)).collect();
        let peak = map.capacity();
        let mut reallocations = 0;
        for n in (0..10_000).rev() {
            map.remove(&n);
            let before = map.capacity();
            shrink_sparse_map(&mut map);
            reallocations += usize::from(map.capacity() != before);
            assert!(map.capacity() >= map.len());
        }
        assert!(map.capacity() <= SHRINK_MIN_CAPACITY, "{}", map.capacity());
        assert!(
            reallocations <= 10,
            "{reallocations} reallocations from {peak}"
        );

        let mut vec: Vec<u8> = Vec::with_capacity(SHRINK_MIN_CAPACITY);
        shrink_sparse_vec(&mut vec);
        assert_eq!(vec.capacity(), SHRINK_MIN_CAPACITY, "small: left alone");
        let mut vec: Vec<u8> = Vec::with_capacity(4096);
        vec.extend([1; 1024]);
        shrink_sparse_vec(&mut vec);
        assert_eq!(vec.capacity(), 2048);
    }

    #[test]
    fn a_due_give_back_is_taken_by_one_caller_only() {
        let tracker = std::sync::Arc::new(Tracker::new());
        (0..100).for_each(|_| tracker.opened());
        (0..100).for_each(|_| tracker.closed());
        let takers: Vec<_> = (0..8)
            .map(|_| {
                let tracker = std::sync::Arc::clone(&tracker);
                std::thread::spawn(move || tracker.take_due())
            })
            .collect();
        let took = takers
            .into_iter()
            .filter_map(|t| t.join().unwrap().then_some(()))
            .count();
        assert_eq!(took, 1);
    }

    #[test]
    fn the_settle_timer_fires_once_after_its_delay() {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let timer = SettleTimer::new().unwrap();
        let ready = |wait: u16| {
            let mut fds = [PollFd::new(timer.fd(), PollFlags::POLLIN)];
            poll(&mut fds, PollTimeout::from(wait)).unwrap() == 1
        };
        assert!(!ready(0), "not armed");
        let armed = Instant::now();
        timer.arm();
        // Generous bound: a loaded machine may be slow to run the poll.
        assert!(ready(10_000), "fired");
        assert!(armed.elapsed() >= GIVE_BACK_SETTLE);
        timer.fire();
        assert!(!ready(0), "once: reading it cleared it");
        timer.fire();
        timer.extend();
        assert!(!ready(1_500), "not armed: extend does nothing");
        // Armed, then put off twice: it fires a full delay after the last.
        timer.arm();
        std::thread::sleep(GIVE_BACK_SETTLE / 2);
        let extended = Instant::now();
        timer.extend();
        assert!(ready(10_000), "fired");
        assert!(extended.elapsed() >= GIVE_BACK_SETTLE);
        timer.fire();
    }
}
