/*
 * c-upper: a sockserv plugin in plain C. It answers every byte it reads in ASCII capitals, on
 * streams (chunk by chunk, until the peer closes), on datagrams (one reply per datagram) and under
 * the reactor (an event-driven session), and shows an error return: a chunk holding "fail!" ends
 * its request with SOCKSERV_STATUS_ERROR and a message, which the server logs with the peer.
 *
 * Build (the header is plugins/sdk/include/sockserv_plugin.h):
 *
 *     cc -std=c11 -Wall -Wextra -O2 -shared -fPIC -I plugins/sdk/include \
 *        -o libc_upper.so plugins/examples/c-upper/upper.c
 *
 * and load it from a config:
 *
 *     [[plugin]]
 *     path = "libc_upper.so"
 *
 *     [[server]]
 *     name = "upper"
 *     listen = "tcp://127.0.0.1:7300"
 *     handler = "c-upper"
 *
 * It takes no options. Everything here follows the rules at the top of the header: the tables are
 * static, texts are pointer and length, the host owns every buffer it lends, and the instance is
 * never written after create, so concurrent requests may share it.
 */

#include <stdint.h>
#include <string.h>

#include "sockserv_plugin.h"

/* How much one read takes: the host's reads are buffered anyway; this is one stack buffer. */
#define CHUNK 4096

#define TEXT(s) { (const uint8_t *)(s), sizeof(s) - 1 }

static SockservBytes text(const char *s) {
    SockservBytes bytes = { (const uint8_t *)s, strlen(s) };
    return bytes;
}

/* Capitals in place. */
static void upper(uint8_t *data, size_t len) {
    for (size_t i = 0; i < len; i++) {
        if (data[i] >= 'a' && data[i] <= 'z') {
            data[i] = (uint8_t)(data[i] - 'a' + 'A');
        }
    }
}

/* Whether data[0..len) holds the 5 bytes "fail!". */
static int asks_to_fail(const uint8_t *data, size_t len) {
    static const char trigger[] = "fail!";
    size_t n = sizeof(trigger) - 1;
    for (size_t i = 0; i + n <= len; i++) {
        if (memcmp(data + i, trigger, n) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Every byte of data written, however many calls it takes: 0, or the host's negated errno. */
static ptrdiff_t write_all(const SockservHostIo *io, const uint8_t *data, size_t len) {
    while (len > 0) {
        ptrdiff_t n = io->write(io->writer, data, len);
        if (n < 0) {
            return n;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

static int32_t failed(const SockservHostIo *io, const char *message) {
    io->fail(io->ctx, text(message));
    return SOCKSERV_STATUS_ERROR;
}

/* The instance: this handler has no options, so any non-null pointer will do. */
static const char INSTANCE = 0;

static void *create(SockservBytes options, void *error_ctx, SockservErrorFn error) {
    /* The options arrive as a JSON object; the host sends "{}" for none. */
    if (options.len != 2 || memcmp(options.ptr, "{}", 2) != 0) {
        error(error_ctx, text("c-upper takes no options"));
        return NULL;
    }
    return (void *)&INSTANCE;
}

static void destroy(void *instance) {
    (void)instance; /* static: nothing to free */
}

static int32_t handle_stream(const void *instance, const SockservHostIo *io) {
    (void)instance;
    uint8_t buf[CHUNK];
    for (;;) {
        ptrdiff_t n = io->read(io->reader, buf, sizeof buf);
        if (n == 0) {
            return SOCKSERV_STATUS_OK; /* the peer closed its side */
        }
        if (n < 0) {
            return failed(io, "reading the connection failed");
        }
        if (asks_to_fail(buf, (size_t)n)) {
            return failed(io, "the peer asked to fail");
        }
        upper(buf, (size_t)n);
        if (write_all(io, buf, (size_t)n) < 0) {
            return failed(io, "writing the connection failed");
        }
    }
}

static int32_t handle_datagram(const void *instance, const SockservHostIo *io) {
    (void)instance;
    uint8_t buf[CHUNK];
    size_t len = 0;
    /* The packet, then 0. A packet longer than the buffer is answered with its first CHUNK. */
    for (;;) {
        ptrdiff_t n = io->read(io->reader, buf + len, sizeof buf - len);
        if (n < 0) {
            return failed(io, "reading the datagram failed");
        }
        if (n == 0 || (len += (size_t)n) == sizeof buf) {
            break;
        }
    }
    upper(buf, len);
    if (write_all(io, buf, len) < 0) {
        return failed(io, "writing the reply failed");
    }
    return SOCKSERV_STATUS_OK;
}

/* Sessions (the reactor): stateless, like the instance; the waker is released at once, since
 * nothing else ever wakes this session. */
static const char SESSION = 0;

static void *session_open(const void *instance, const SockservSessionIo *io) {
    (void)instance;
    io->release_waker(io->waker);
    return (void *)&SESSION;
}

static int32_t session_event(void *session, uint32_t event, SockservBytes data,
                             const SockservSessionIo *io) {
    (void)session;
    uint8_t buf[CHUNK];
    switch (event) {
    case SOCKSERV_EVENT_DATA:
        if (asks_to_fail(data.ptr, data.len)) {
            io->fail(io->ctx, text("the peer asked to fail"));
            return SOCKSERV_STATUS_ERROR;
        }
        for (size_t at = 0; at < data.len; at += sizeof buf) {
            size_t len = data.len - at < sizeof buf ? data.len - at : sizeof buf;
            memcpy(buf, data.ptr + at, len);
            upper(buf, len);
            SockservBytes out = { buf, len };
            io->write(io->ctx, out); /* the host copies it */
        }
        return SOCKSERV_STATUS_OK;
    case SOCKSERV_EVENT_EOF:
        io->close(io->ctx); /* once what is queued is written */
        return SOCKSERV_STATUS_OK;
    default: /* OPEN, WAKE: nothing to do */
        return SOCKSERV_STATUS_OK;
    }
}

static void session_close(void *session) {
    (void)session; /* static: nothing to free */
}

static const SockservHandlerTable HANDLERS[] = {{
    .size = sizeof(SockservHandlerTable),
    .name = TEXT("c-upper"),
    .summary = TEXT("every byte back in ASCII capitals (a plugin in C)"),
    .socket_kinds = SOCKSERV_KIND_STREAM | SOCKSERV_KIND_DATAGRAM,
    .strategies = SOCKSERV_STRATEGY_SYNC | SOCKSERV_STRATEGY_THREADING | SOCKSERV_STRATEGY_FORKING
                  | SOCKSERV_STRATEGY_REACTOR,
    .create = create,
    .handle_stream = handle_stream,
    .handle_datagram = handle_datagram,
    .destroy = destroy,
    .session_open = session_open,
    .session_event = session_event,
    .session_close = session_close,
    .create_in = NULL, /* no file names among its options: create is enough */
}};

static const SockservPluginTable TABLE = {
    .magic = { 'S', 'O', 'C', 'K', 'S', 'E', 'R', 'V' },
    .abi_major = SOCKSERV_ABI_MAJOR,
    .abi_minor = SOCKSERV_ABI_MINOR,
    .size = sizeof(SockservPluginTable),
    .name = TEXT("c-upper"),
    .version = TEXT("0.1.0"),
    .handlers = HANDLERS,
    .handler_count = sizeof HANDLERS / sizeof HANDLERS[0],
};

const SockservPluginTable *sockserv_plugin_entry(void) {
    return &TABLE;
}
