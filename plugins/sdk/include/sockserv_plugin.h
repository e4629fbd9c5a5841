/*
 * sockserv plugin ABI, for plugins written in C (or any language with a C FFI).
 *
 * The comments on each item below are the Rust SDK's documentation of it; they name the Rust
 * items (HostIo, STATUS_OK, ...), which are SockservHostIo, SOCKSERV_STATUS_OK, ... here.
 *
 * WHAT A PLUGIN IS
 *   A shared library (cc -shared -fPIC) exporting one function,
 *       const SockservPluginTable *sockserv_plugin_entry(void);
 *   that returns a pointer to a table in static storage. The host calls it once, at load, from
 *   its main thread, before any request; the library is never unloaded, so everything the tables
 *   point at (names, handler tables, functions) must live for the rest of the process.
 *
 * LAYOUT RULES
 *   - Every struct here is a plain C struct with the platform's natural alignment (what this
 *     header declares: do not pack). `size_t` fields are the pointer's size.
 *   - SockservPluginTable: magic is the 8 bytes of SOCKSERV_ABI_MAGIC without a NUL; abi_major
 *     is SOCKSERV_ABI_MAJOR (the host refuses another major), abi_minor the minor this header
 *     has; size is sizeof(SockservPluginTable).
 *   - handlers points at handler_count SockservHandlerTable laid out as one C array. Each table's
 *     size is sizeof(SockservHandlerTable) as you built it, and all of a plugin's tables have the
 *     same size: the host walks the array with the first table's size as its stride, reads at
 *     most that many bytes of each, and takes a field past a table's end as absent (NULL).
 *   - Tables only ever grow at the end (a minor version appends fields), so a plugin built
 *     against an older header keeps loading. A field added by a later minor is read only when the
 *     other side's size covers it: read io->tls only when
 *     io->size >= offsetof(SockservHostIo, tls) + sizeof(io->tls) (the same for SessionIo).
 *   - create, handle_stream, handle_datagram and destroy are required (the host refuses a table
 *     where one is NULL); session_open, session_event and session_close are optional and count
 *     only as a set (all three, or the handler has no sessions and is refused under the reactor);
 *     create_in is optional.
 *
 * TEXT AND BUFFERS: WHO OWNS WHAT
 *   - SockservBytes is a pointer and a length, UTF-8 for text, never NUL-terminated. In tables it
 *     points at static storage; passed to or from a call, it is valid during that call only:
 *     copy what you keep.
 *   - The host owns every buffer it passes (options, addresses, names, data, TLS fields). The
 *     plugin owns every buffer it passes (messages to error, fail and log; data to write); the
 *     host copies what it keeps before the call returns. Nobody frees the other side's memory.
 *   - The instance create (or create_in) returns is the plugin's: the host passes it back to every
 *     call and to destroy, once, when no request uses it any more. A session pointer from
 *     session_open is the plugin's until session_close, called once.
 *
 * THREADS
 *   - handle_stream and handle_datagram are called concurrently, on many threads, with the same
 *     instance: keep it read-only after create, or lock. Each call's io is valid for that call.
 *   - In a call, io->reader and io->writer may each be used by one thread at a time, and the two
 *     from two threads at once (read on one, write on another); the ctx callbacks (log, fail,
 *     shutdown_server, shutdown_connection) are thread-safe.
 *   - Session events of one connection come one at a time, on an event loop thread shared with
 *     other connections: return promptly, never block. The waker handed to session_open may be
 *     used from any thread; it is the plugin's from that call on, even when session_open returns
 *     NULL, and must be released with release_waker exactly once.
 *   - Under the forking strategy each request runs in a child process: what a request changes in
 *     memory is gone when it ends.
 *
 * ERRORS
 *   - create returns NULL after calling error(error_ctx, message) with the reason; the host shows
 *     it at `sockserv check`.
 *   - read returns the byte count, 0 at end of input, or a negated errno; write returns the count
 *     written (possibly fewer than asked: loop) or a negated errno. EINTR never comes back.
 *   - handle_stream, handle_datagram and session_event return SOCKSERV_STATUS_OK, or
 *     SOCKSERV_STATUS_ERROR after calling fail(ctx, message); the host logs the message with the
 *     server and the peer, closes that request and goes on serving. SOCKSERV_STATUS_PANIC is for
 *     a crash caught in the plugin (a C++ exception: never let one cross this boundary).
 *   - Log levels of log(): 1 error, 2 warn, 3 info, 4 debug.
 *
 * DATAGRAMS
 *   handle_datagram's read gives the one packet (then 0); what write writes during the call is
 *   sent back to the sender as one datagram after the call returns (nothing if nothing was
 *   written).
 */


#ifndef SOCKSERV_PLUGIN_H
#define SOCKSERV_PLUGIN_H

/* Generated by cbindgen from plugins/sdk/src/abi/mod.rs (settings: plugins/sdk/cbindgen.toml). Do not edit: change the Rust source and run SOCKSERV_BLESS=1 cargo test -p sockserv-plugin --test c_header. */

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
/* ABI_MAGIC: the first 8 bytes of every plugin table (copy them without the NUL). */
#define SOCKSERV_ABI_MAGIC "SOCKSERV"
/* ENTRY_SYMBOL: the one symbol a plugin exports. */
#define SOCKSERV_ENTRY_SYMBOL "sockserv_plugin_entry"

/* The entry point every plugin defines: its table, in static storage. */
struct SockservPluginTable;
#ifdef __cplusplus
extern "C"
#endif
const struct SockservPluginTable *sockserv_plugin_entry(void);


/**
 * Changes when the ABI changes incompatibly; the host refuses another major.
 */
#define SOCKSERV_ABI_MAJOR 1

/**
 * Changes when fields or flags are appended; a host accepts any minor of its major.
 * 1.1 appended the event-driven session entries to [`HandlerTable`] and [`STRATEGY_REACTOR`];
 * 1.2 appended `tls` ([`TlsPeer`]) to [`HostIo`] and [`SessionIo`];
 * 1.3 appended `create_in` (the config file's folder at creation) to [`HandlerTable`].
 */
#define SOCKSERV_ABI_MINOR 3

/**
 * Socket-kind flags of [`HandlerTable::socket_kinds`].
 */
#define SOCKSERV_KIND_STREAM 1

#define SOCKSERV_KIND_DATAGRAM 2

/**
 * Strategy flags of [`HandlerTable::strategies`]. The pool runs blocking handlers as threading
 * does, so `STRATEGY_THREADING` covers it.
 */
#define SOCKSERV_STRATEGY_SYNC 1

#define SOCKSERV_STRATEGY_THREADING 2

#define SOCKSERV_STRATEGY_FORKING 4

/**
 * Since 1.1: the handler has event-driven sessions (`session_*` in [`HandlerTable`]).
 */
#define SOCKSERV_STRATEGY_REACTOR 8

/**
 * Session events of [`HandlerTable::session_event`] (ABI 1.1).
 */
#define SOCKSERV_EVENT_OPEN 0

#define SOCKSERV_EVENT_DATA 1

#define SOCKSERV_EVENT_EOF 2

#define SOCKSERV_EVENT_WAKE 3

/**
 * What a handle function returns.
 */
#define SOCKSERV_STATUS_OK 0

/**
 * The handler returned an error; its message was passed to [`HostIo::fail`].
 */
#define SOCKSERV_STATUS_ERROR 1

/**
 * The handler panicked; the panic was caught in the plugin and its message passed to `fail`.
 */
#define SOCKSERV_STATUS_PANIC 2

/**
 * Borrowed bytes: static in tables, valid for the duration of a call elsewhere.
 */
typedef struct SockservBytes {
  const uint8_t *ptr;
  size_t len;
} SockservBytes;

/**
 * [`HandlerTable::create`]'s error callback.
 */
typedef void (*SockservErrorFn)(void *error_ctx, struct SockservBytes message);

/**
 * A TLS connection's parameters and peer identity (ABI 1.2), the C form of
 * [`TlsInfo`](crate::TlsInfo): each field UTF-8 text (the DER certificate excepted), valid during
 * the call; an empty field means "none" (an ALPN protocol, an SNI name, a subject and a
 * certificate are never empty when present).
 */
typedef struct SockservTlsPeer {
  /**
   * `size_of::<TlsPeer>()` as the host was built: fields are only ever appended.
   */
  size_t size;
  struct SockservBytes version;
  struct SockservBytes cipher_suite;
  struct SockservBytes alpn;
  struct SockservBytes server_name;
  struct SockservBytes client_subject;
  struct SockservBytes client_common_name;
  struct SockservBytes client_cert_der;
} SockservTlsPeer;

/**
 * The host's side of one request. Each of `reader`, `writer` and `ctx` may be used from one thread
 * at a time, and `reader` and `writer` from two different threads at once. The `ctx` callbacks are
 * thread-safe.
 */
typedef struct SockservHostIo {
  /**
   * `size_of::<HostIo>()` as the host was built.
   */
  size_t size;
  /**
   * 0: a connection; 1: a datagram.
   */
  uint32_t kind;
  /**
   * Peer and local address, and the server's name, as UTF-8 text, valid during the call.
   */
  struct SockservBytes peer;
  struct SockservBytes local;
  struct SockservBytes server_name;
  void *reader;
  /**
   * Read up to `len` bytes into `buf`: the count, 0 at end of input, or a negated errno. A `len`
   * of 0 reads nothing and returns 0, whatever `buf` is (null included); a null `buf` with a
   * length returns `-EINVAL`.
   */
  ptrdiff_t (*read)(void *reader, uint8_t *buf, size_t len);
  void *writer;
  /**
   * Write up to `len` bytes from `buf`: the count written, or a negated errno. A `len` of 0
   * writes nothing and returns 0, whatever `buf` is; a null `buf` with a length returns
   * `-EINVAL`.
   */
  ptrdiff_t (*write)(void *writer, const uint8_t *buf, size_t len);
  const void *ctx;
  /**
   * Log a line under the server's name.
   */
  void (*log)(const void *ctx, uint32_t level, struct SockservBytes message);
  /**
   * Say why the request failed, before returning `STATUS_ERROR` or `STATUS_PANIC`.
   */
  void (*fail)(const void *ctx, struct SockservBytes message);
  /**
   * Ask the server to shut down.
   */
  void (*shutdown_server)(const void *ctx);
  /**
   * Shut the connection down (0 read, 1 write, 2 both); 0 or a negated errno.
   */
  int32_t (*shutdown_connection)(const void *ctx, uint32_t how);
  /**
   * On a TLS connection: its parameters and peer identity, valid during the call; null
   * otherwise (no TLS, a datagram, or a host older than 1.2).
   */
  const struct SockservTlsPeer *tls;
} SockservHostIo;

/**
 * The host's side of one session event (ABI 1.1). `ctx` and `server` are valid during the call
 * only, on the event loop's thread; the waker may be used from any thread until released.
 */
typedef struct SockservSessionIo {
  /**
   * `size_of::<SessionIo>()` as the host was built.
   */
  size_t size;
  struct SockservBytes peer;
  struct SockservBytes local;
  struct SockservBytes server_name;
  void *ctx;
  /**
   * Queue bytes for the peer.
   */
  void (*write)(void *ctx, struct SockservBytes data);
  /**
   * Close the connection once its output is written.
   */
  void (*close)(void *ctx);
  /**
   * Bytes queued and not yet on the wire.
   */
  size_t (*pending)(void *ctx);
  /**
   * Say why an event failed, before returning `STATUS_ERROR` or `STATUS_PANIC`.
   */
  void (*fail)(void *ctx, struct SockservBytes message);
  const void *server;
  void (*log)(const void *server, uint32_t level, struct SockservBytes message);
  void (*shutdown_server)(const void *server);
  /**
   * At `session_open` only (null otherwise): the session's waker.
   */
  const void *waker;
  void (*wake)(const void *waker);
  void (*release_waker)(const void *waker);
  /**
   * At `session_open` only, on a TLS connection: its parameters and peer identity; null
   * otherwise (no TLS, an event other than open, or a host older than 1.2).
   */
  const struct SockservTlsPeer *tls;
} SockservSessionIo;

/**
 * One handler a plugin provides.
 *
 * Its four ABI 1.0 functions are required; they are `Option`s so that a null one is something the
 * host can see (an `Option` of a function pointer has the pointer's layout, `None` being null) and
 * refuse at load, naming the entry, instead of calling through it. The ABI 1.1 session entries are
 * optional: null, or absent from an older table, means the handler has no sessions.
 */
typedef struct SockservHandlerTable {
  /**
   * `size_of::<HandlerTable>()` as the plugin was built.
   */
  size_t size;
  /**
   * The name a config uses (`handler = "kv"`), and one line for listings.
   */
  struct SockservBytes name;
  struct SockservBytes summary;
  /**
   * `KIND_*` and `STRATEGY_*` flags: what this handler can serve under.
   */
  uint32_t socket_kinds;
  uint32_t strategies;
  /**
   * Required. Make an instance from the handler's options (a JSON object). On failure return
   * null after passing a message to `error(error_ctx, message)`.
   */
  void *(*create)(struct SockservBytes options, void *error_ctx, SockservErrorFn error);
  /**
   * Required. Serve one connection; the instance is shared by concurrent requests.
   */
  int32_t (*handle_stream)(const void *instance, const struct SockservHostIo *io);
  /**
   * Required. Serve one datagram: `read` gives the packet, `write` appends to the one reply
   * datagram.
   */
  int32_t (*handle_datagram)(const void *instance, const struct SockservHostIo *io);
  /**
   * Required. Release an instance. The host calls it once, when no request uses the instance
   * any more.
   */
  void (*destroy)(void *instance);
  /**
   * Open a session for one connection; null when the handler has none. The waker in `io` belongs
   * to the plugin from this call on, whatever it returns: it must release it exactly once.
   */
  void *(*session_open)(const void *instance, const struct SockservSessionIo *io);
  /**
   * Deliver one `EVENT_*` (with its bytes for `EVENT_DATA`); returns a `STATUS_*`.
   */
  int32_t (*session_event)(void *session,
                           uint32_t event,
                           struct SockservBytes data,
                           const struct SockservSessionIo *io);
  /**
   * Release a session: its connection is gone.
   */
  void (*session_close)(void *session);
  /**
   * Optional. As `create`, and also given the folder of the config file that names the handler
   * (its path's bytes: absolute, UTF-8 on any usual system), against which the handler resolves
   * relative paths in its options. A 1.3 host calls it instead of `create` when it is not
   * null; an older host calls `create`, so a handler that has it keeps `create` as well.
   */
  void *(*create_in)(struct SockservBytes options,
                     struct SockservBytes config_dir,
                     void *error_ctx,
                     SockservErrorFn error);
} SockservHandlerTable;

/**
 * What the entry symbol returns.
 */
typedef struct SockservPluginTable {
  uint8_t magic[8];
  uint32_t abi_major;
  uint32_t abi_minor;
  /**
   * `size_of::<PluginTable>()` as the plugin was built: fields are only ever appended.
   */
  size_t size;
  /**
   * The plugin's name and version (UTF-8).
   */
  struct SockservBytes name;
  struct SockservBytes version;
  const struct SockservHandlerTable *handlers;
  size_t handler_count;
} SockservPluginTable;

/**
 * The entry function's type.
 */
typedef const struct SockservPluginTable *(*SockservEntryFn)(void);

#endif  /* SOCKSERV_PLUGIN_H */
