//! The memory every process of a `sockserv serve` counts in: one `MAP_SHARED` mapping of a memory
//! file (memfd_create(2)), made by the main process before any server is. A request child forked
//! by a forking server shares it as any fork does; a forking server's own process (an execve of
//! this executable, see `spawn`) and an upgrade's successor are handed its descriptor
//! ([`METRICS_FD`]) and map it too. So a count made in any of them is seen by whichever process
//! serves `/metrics`. The board starts with a magic number that names its layout: a successor
//! built with another layout makes a board of its own rather than misread this one.
//!
//! Everything in it is an atomic (zero is a valid value of each, and the mapping starts zeroed):
//! counting is a relaxed `fetch_add`, with no lock and no allocation. The board holds a fixed
//! number of server [`Slot`]s ([`MAX_SERVERS`]), each claimed by a server's name in any process
//! (a compare-and-swap on its state), and a few process-wide counters. A slot is never given up:
//! a server that comes back under the same name (a reload) goes on counting in it.
//!
//! Labels live in the board too, since the process that encodes them may not be the one that
//! bound the server: they are bytes written under a sequence lock (`labels_seq` odd while they
//! change), read again when the sequence moved under the reader.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;

/// The environment variable that hands the board's descriptor to a process this one starts
/// (see `spawn::Exec::extra`).
pub const METRICS_FD: &str = "SOCKSERV_METRICS_FD";

/// The board's layout, at its start: a board mapped from a descriptor is used only if it has
/// this (bump the last byte whenever the layout changes; the size is mixed in as well).
const MAGIC: u64 = 0x736f_636b_6d65_7401 ^ std::mem::size_of::<Board>() as u64;

/// How many servers the board has room for. A server beyond it counts in memory of its own
/// process, unseen by `/metrics`, and a warning says so once.
pub const MAX_SERVERS: usize = 256;
/// The bytes of a server's name kept for its label; a longer name is cut at a character
/// boundary (it is still matched by its whole text, through `name_hash`).
pub const NAME_BYTES: usize = 128;
/// The bytes of a handler's name kept for its label.
pub const HANDLER_BYTES: usize = 64;

/// Counters per server, by index ([`super::Counter`] names them).
pub const COUNTERS: usize = 64;

const FREE: u32 = 0;
const WRITING: u32 = 1;
const CLAIMED: u32 = 2;

/// One server's counters and labels.
#[repr(C)]
pub struct Slot {
    /// `FREE`, `WRITING` (its name is being written) or `CLAIMED`.
    state: AtomicU32,
    /// The labels' sequence lock: 0 never labelled, odd while they are written.
    labels_seq: AtomicU32,
    /// A hash of the whole name, so that names longer than [`NAME_BYTES`] still match exactly.
    name_hash: AtomicU64,
    name_len: AtomicU32,
    handler_len: AtomicU32,
    /// The socket kind and strategy, as indexes of `SocketKind::ALL` and `StrategyKind::ALL`.
    transport: AtomicU32,
    strategy: AtomicU32,
    name: [AtomicU8; NAME_BYTES],
    handler: [AtomicU8; HANDLER_BYTES],
    /// The counts, indexed by `Counter`.
    pub counts: [AtomicU64; COUNTERS],
}

/// Counts of the whole process tree, not of one server.
#[repr(C)]
pub struct Global {
    pub reloads_succeeded: AtomicU64,
    pub reloads_failed: AtomicU64,
    pub plugin_load_failures: AtomicU64,
}

#[repr(C)]
pub struct Board {
    /// [`MAGIC`] once made.
    magic: AtomicU64,
    pub global: Global,
    slots: [Slot; MAX_SERVERS],
}

/// What a slot's labels say, read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labels {
    pub name: String,
    pub handler: String,
    pub transport: usize,
    pub strategy: usize,
}

/// The board, and the descriptor of its memory file (none for a board of this process's own).
struct Made {
    board: &'static Board,
    fd: Option<OwnedFd>,
}

static BOARD: OnceLock<Made> = OnceLock::new();

/// The board, made on first use (see [`adopt`] for a process handed one).
pub fn board() -> &'static Board {
    made().board
}

/// The descriptor of the board's memory file, to hand to a process this one starts.
pub fn descriptor() -> Option<BorrowedFd<'static>> {
    made().fd.as_ref().map(AsFd::as_fd)
}

fn made() -> &'static Made {
    BOARD.get_or_init(|| match make() {
        Ok(made) => made,
        Err(err) => {
            log::warn!(
                "metrics: cannot make shared memory ({err}); counts made in other processes \
                 will not be seen by /metrics"
            );
            Made {
                board: private::<Board>(),
                fd: None,
            }
        }
    })
}

/// A new board in a memory file.
fn make() -> io::Result<Made> {
    use nix::sys::memfd::{memfd_create, MFdFlags};
    let fd = memfd_create("sockserv-metrics", MFdFlags::MFD_CLOEXEC)?;
    nix::unistd::ftruncate(&fd, std::mem::size_of::<Board>() as i64)?;
    let board = map::<Board>(Some(fd.as_raw_fd()))?;
    board.magic.store(MAGIC, Ordering::Release);
    Ok(Made {
        board,
        fd: Some(fd),
    })
}

/// Count in the board of memory file `fd` (handed over by the process that started this one)
/// from now on.
///
/// # Errors
///
/// Why not, and then this process makes a board of its own on first use: a board was in use
/// here already, the file is not the size of a board, or its layout is another build's.
pub fn adopt(fd: OwnedFd) -> Result<(), String> {
    if BOARD.get().is_some() {
        return Err("this process counts in a board already".into());
    }
    let size = nix::sys::stat::fstat(&fd)
        .map_err(|err| err.to_string())?
        .st_size;
    if usize::try_from(size).ok() != Some(std::mem::size_of::<Board>()) {
        return Err(format!(
            "the board handed over is {size} bytes, not a board of this build"
        ));
    }
    let board = map::<Board>(Some(fd.as_raw_fd())).map_err(|err| err.to_string())?;
    if board.magic.load(Ordering::Acquire) != MAGIC {
        return Err("the board handed over is another build's".into());
    }
    let made = Made {
        board,
        fd: Some(fd),
    };
    BOARD
        .set(made)
        .map_err(|_| "this process counts in a board already".to_string())
}

/// A slot in this process's memory alone, for a server the board has no room for.
pub fn private_slot() -> &'static Slot {
    private::<Slot>()
}

/// A shared mapping of one `T`, of memory file `fd` (sized for it) or anonymous, never unmapped.
fn map<T>(fd: Option<RawFd>) -> io::Result<&'static T> {
    let len = std::mem::size_of::<T>();
    let flags = match fd {
        Some(_) => libc::MAP_SHARED,
        None => libc::MAP_SHARED | libc::MAP_ANONYMOUS,
    };
    // SAFETY: mmap takes no address of ours; the kernel returns MAP_FAILED or a fresh,
    // page-aligned region of `len` bytes: zero-filled when anonymous, the file's bytes otherwise
    // (a file only ever written through such mappings, as atomics).
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            fd.unwrap_or(-1),
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the region is `size_of::<T>()` bytes, page-aligned (more than any atomic needs),
    // and never unmapped, so it lives for 'static. `T` is made of atomics only (`Board`, `Slot`),
    // for which any bytes are a valid value (a new file or mapping is zeroed; an adopted board is
    // checked for its magic first), and which may be shared between threads and, through the
    // mapping, processes.
    Ok(unsafe { &*addr.cast::<T>() })
}

/// One zeroed `T` on the heap, leaked (for when the mapping cannot be made).
fn private<T>() -> &'static T {
    let layout = std::alloc::Layout::new::<T>();
    // SAFETY: `T`'s layout is not zero-sized (a `Board` or a `Slot`); a null return is handled
    // below. As in `map_shared`, all-zero bytes are a valid `T`, and the memory is never freed.
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
    if ptr.is_null() {
        std::alloc::handle_alloc_error(layout);
    }
    // SAFETY: see above.
    unsafe { &*ptr.cast::<T>() }
}

/// FNV-1a over the name: stable across processes, unlike std's randomly keyed hasher.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `text` cut to at most `max` bytes at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn store(bytes: &[AtomicU8], len: &AtomicU32, text: &str) {
    let text = cut(text, bytes.len());
    for (cell, byte) in bytes.iter().zip(text.bytes()) {
        cell.store(byte, Ordering::Relaxed);
    }
    len.store(text.len() as u32, Ordering::Relaxed);
}

fn load(bytes: &[AtomicU8], len: &AtomicU32) -> String {
    let len = (len.load(Ordering::Relaxed) as usize).min(bytes.len());
    let raw: Vec<u8> = bytes[..len]
        .iter()
        .map(|b| b.load(Ordering::Relaxed))
        .collect();
    String::from_utf8_lossy(&raw).into_owned()
}

impl Board {
    /// The slot of the server named `name`: the one it has, or a free one claimed for it now;
    /// `None` when every slot is taken.
    pub fn claim(&self, name: &str) -> Option<&Slot> {
        let hash = name_hash(name);
        loop {
            let mut raced = false;
            for slot in &self.slots {
                match slot.state.load(Ordering::Acquire) {
                    CLAIMED if slot.is_named(name, hash) => return Some(slot),
                    CLAIMED => {}
                    WRITING => raced = true,
                    _ => {
                        let taken = slot.state.compare_exchange(
                            FREE,
                            WRITING,
                            Ordering::Acquire,
                            Ordering::Relaxed,
                        );
                        if taken.is_err() {
                            raced = true;
                            continue;
                        }
                        store(&slot.name, &slot.name_len, name);
                        slot.name_hash.store(hash, Ordering::Relaxed);
                        slot.state.store(CLAIMED, Ordering::Release);
                        return Some(slot);
                    }
                }
            }
            if !raced {
                return None;
            }
            // Another process is writing a name in a slot we passed; it may be this one. A
            // claim takes microseconds: look again.
            std::thread::yield_now();
        }
    }

    /// Every slot that was labelled (its server was bound at least once), with its labels.
    pub fn labelled(&self) -> impl Iterator<Item = (Labels, &Slot)> {
        self.slots
            .iter()
            .filter(|slot| slot.state.load(Ordering::Acquire) == CLAIMED)
            .filter_map(|slot| Some((slot.labels()?, slot)))
    }
}

impl Slot {
    fn is_named(&self, name: &str, hash: u64) -> bool {
        self.name_hash.load(Ordering::Relaxed) == hash
            && load(&self.name, &self.name_len) == cut(name, NAME_BYTES)
    }

    /// Set the labels (the name is the claim's): the handler, and the indexes of the socket
    /// kind and the strategy.
    pub fn set_labels(&self, handler: &str, transport: usize, strategy: usize) {
        self.labels_seq.fetch_add(1, Ordering::Acquire);
        fence(Ordering::Release);
        store(&self.handler, &self.handler_len, handler);
        self.transport.store(transport as u32, Ordering::Relaxed);
        self.strategy.store(strategy as u32, Ordering::Relaxed);
        self.labels_seq.fetch_add(1, Ordering::Release);
    }

    /// The labels, read whole; `None` if never labelled.
    pub fn labels(&self) -> Option<Labels> {
        // Bounded: a writer that died half-way leaves the sequence odd for ever.
        for _ in 0..1000 {
            let before = self.labels_seq.load(Ordering::Acquire);
            if before == 0 {
                return None;
            }
            if before % 2 == 1 {
                std::thread::yield_now();
                continue;
            }
            let labels = Labels {
                name: load(&self.name, &self.name_len),
                handler: load(&self.handler, &self.handler_len),
                transport: self.transport.load(Ordering::Relaxed) as usize,
                strategy: self.strategy.load(Ordering::Relaxed) as usize,
            };
            fence(Ordering::Acquire);
            if self.labels_seq.load(Ordering::Relaxed) == before {
                return Some(labels);
            }
        }
        None
    }

    /// Count `n` more of counter `index`.
    #[inline]
    pub fn add(&self, index: usize, n: u64) {
        self.counts[index].fetch_add(n, Ordering::Relaxed);
    }

    /// Counter `index` now.
    pub fn get(&self, index: usize) -> u64 {
        self.counts[index].load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_in_a_forked_child_is_seen_by_the_parent() {
        let slot = map::<Slot>(None).expect("an anonymous shared mapping");
        slot.add(3, 5);
        // A plain fork in a test process with several threads: the child only adds to an atomic
        // and `_exit`s, which needs no lock another thread could hold.
        // SAFETY: see the line above.
        match unsafe { libc::fork() } {
            0 => {
                slot.add(3, 7);
                // SAFETY: ends the child without running the test harness's code.
                unsafe { libc::_exit(0) }
            }
            child if child > 0 => {
                let mut status = 0;
                // SAFETY: waits for the child just forked; `status` is a valid out-pointer.
                unsafe { libc::waitpid(child, &mut status, 0) };
                assert_eq!(slot.get(3), 12);
            }
            _ => panic!("fork failed"),
        }
    }

    #[test]
    fn names_claim_one_slot_each_and_long_names_still_match_whole() {
        let board = private::<Board>();
        let long_a = format!("{}a", "x".repeat(NAME_BYTES));
        let long_b = format!("{}b", "x".repeat(NAME_BYTES));
        let a = board.claim(&long_a).unwrap() as *const Slot;
        let b = board.claim(&long_b).unwrap() as *const Slot;
        assert_ne!(a, b);
        assert_eq!(board.claim(&long_a).unwrap() as *const Slot, a);
        assert_eq!(board.labelled().count(), 0, "nothing labelled yet");
        board.claim("echo").unwrap().set_labels("echo", 0, 1);
        let labelled: Vec<_> = board.labelled().map(|(labels, _)| labels).collect();
        let expected = Labels {
            name: "echo".into(),
            handler: "echo".into(),
            transport: 0,
            strategy: 1,
        };
        assert_eq!(labelled, [expected]);
    }

    #[test]
    fn a_full_board_claims_nothing_more() {
        let board = private::<Board>();
        for n in 0..MAX_SERVERS {
            assert!(board.claim(&format!("s{n}")).is_some());
        }
        assert!(board.claim("one too many").is_none());
        assert!(
            board.claim("s0").is_some(),
            "a name already there still has its slot"
        );
    }

    #[test]
    fn a_board_handed_over_by_descriptor_is_the_same_memory() {
        let made = make().expect("a memory file");
        made.board
            .global
            .plugin_load_failures
            .fetch_add(3, Ordering::Relaxed);
        let fd = made.fd.as_ref().unwrap().try_clone().unwrap();
        let again = map::<Board>(Some(fd.as_raw_fd())).unwrap();
        assert_eq!(again.magic.load(Ordering::Relaxed), MAGIC);
        again
            .global
            .plugin_load_failures
            .fetch_add(1, Ordering::Relaxed);
        let seen = made
            .board
            .global
            .plugin_load_failures
            .load(Ordering::Relaxed);
        assert_eq!(seen, 4);
    }

    #[test]
    fn names_are_cut_at_a_character_boundary() {
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("héllo", 3), "hé");
        assert_eq!(cut("abc", 10), "abc");
    }
}
