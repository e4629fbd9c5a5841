//! `sockserv serve` with the search handler, from the outside: the tutorial's exchanges byte for byte,
//! every kind of bad input with its error reply (and, where the frame's end is lost, the close), a
//! request trickled one byte at a time, pipelined requests, many clients at once, an index file, the
//! `check` refusal of datagram endpoints, and `sockserv client search`.
//!
//! Replies are decoded with the handler crate's frame parser, which its unit tests pin to the
//! tutorial's hex strings; on a little-endian host the replies are also compared byte for byte.

mod common;

use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::{config, run, temp_dir, write_config, Client, Endpoint, ServeProcess, WAIT};
use sockserv_handlers::search::client::{read_answer, Answer};
use sockserv_handlers::search::frame::{parse_frame, ByteOrder};

/// The tutorial's frames (shared/protocols/search.md).
const SEARCH_MORPHEUS: &str = "00647b22627974656f72646572223a2022626967222c2022636f6e74656e742d74797065223a2022746578742f6a736f6e222c2022636f6e74656e742d656e636f64696e67223a20227574662d38222c2022636f6e74656e742d6c656e677468223a2034317d7b22616374696f6e223a2022736561726368222c202276616c7565223a20226d6f727068657573227d";
const REPLY_MORPHEUS: &str = "00677b22627974656f72646572223a20226c6974746c65222c2022636f6e74656e742d74797065223a2022746578742f6a736f6e222c2022636f6e74656e742d656e636f64696e67223a20227574662d38222c2022636f6e74656e742d6c656e677468223a2034337d7b22726573756c74223a2022466f6c6c6f7720746865207768697465207261626269742e20f09f90b0227d";
const SEARCH_DOG: &str = "00647b22627974656f72646572223a2022626967222c2022636f6e74656e742d74797065223a2022746578742f6a736f6e222c2022636f6e74656e742d656e636f64696e67223a20227574662d38222c2022636f6e74656e742d6c656e677468223a2033377d7b22616374696f6e223a2022736561726368222c202276616c7565223a2022f09f90b6227d";
const REPLY_DOG: &str = "00677b22627974656f72646572223a20226c6974746c65222c2022636f6e74656e742d74797065223a2022746578742f6a736f6e222c2022636f6e74656e742d656e636f64696e67223a20227574662d38222c2022636f6e74656e742d6c656e677468223a2033377d7b22726573756c74223a2022f09f90be20506c6179696e672062616c6c2120f09f8f90227d";
const BINARY_REQUEST: &str = "007c7b22627974656f72646572223a2022626967222c2022636f6e74656e742d74797065223a202262696e6172792f637573746f6d2d636c69656e742d62696e6172792d74797065222c2022636f6e74656e742d656e636f64696e67223a202262696e617279222c2022636f6e74656e742d6c656e677468223a2031307d62696e617279f09f9883";
const BINARY_REPLY: &str = "007f7b22627974656f72646572223a20226c6974746c65222c2022636f6e74656e742d74797065223a202262696e6172792f637573746f6d2d7365727665722d62696e6172792d74797065222c2022636f6e74656e742d656e636f64696e67223a202262696e617279222c2022636f6e74656e742d6c656e677468223a2033377d4669727374203130206279746573206f6620726571756573743a2062696e617279f09f9883";

const MORPHEUS_RESULT: &str = "Follow the white rabbit. 🐰";

/// Both stream kinds under every strategy: (name, listen, strategy).
#[rustfmt::skip]
const MATRIX: &[(&str, &str, &str)] = &[
    ("tcp-sync",       "tcp://127.0.0.1:0",           "sync"),
    ("tcp-threading",  "tcp://127.0.0.1:0",           "threading"),
    ("tcp-forking",    "tcp://127.0.0.1:0",           "forking"),
    ("tcp-pool",       "tcp://127.0.0.1:0",           "pool"),
    ("tcp-reactor",    "tcp://127.0.0.1:0",           "reactor"),
    ("unix-sync",      "unix://{dir}/sync.sock",      "sync"),
    ("unix-threading", "unix://{dir}/threading.sock", "threading"),
    ("unix-forking",   "unix://{dir}/forking.sock",   "forking"),
    ("unix-pool",      "unix://{dir}/pool.sock",      "pool"),
    ("unix-reactor",   "unix://{dir}/reactor.sock",   "reactor"),
];

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).unwrap())
        .collect()
}

/// One search server per row of [`MATRIX`], each with `options` (TOML lines) under `[server.options]`.
fn serve_matrix(options: &str) -> ServeProcess {
    let extra = format!("[server.options]\n{options}");
    let rows: Vec<_> = MATRIX
        .iter()
        .map(|&(name, listen, strategy)| (name, listen, "search", strategy, extra.as_str()))
        .collect();
    ServeProcess::start(&config(&rows))
}

/// A frame written the way the tutorial's client writes one.
fn request(content_type: &str, encoding: &str, content: &[u8]) -> Vec<u8> {
    let header = format!(
        r#"{{"byteorder": "little", "content-type": "{content_type}", "content-encoding": "{encoding}", "content-length": {}}}"#,
        content.len()
    );
    raw(header.as_bytes(), content)
}

/// A frame with `header` as its header bytes, whatever they are.
fn raw(header: &[u8], content: &[u8]) -> Vec<u8> {
    [&(header.len() as u16).to_be_bytes()[..], header, content].concat()
}

fn search(value: &str) -> Vec<u8> {
    let content = format!(r#"{{"action": "search", "value": "{value}"}}"#);
    request("text/json", "utf-8", content.as_bytes())
}

/// A decoded reply: what it says, plus the frame's header fields and bytes.
#[derive(Debug)]
struct Reply {
    byteorder: ByteOrder,
    content_type: String,
    content: Vec<u8>,
    answer: Answer,
    bytes: Vec<u8>,
}

impl Reply {
    /// The `"result"` of a JSON reply.
    fn result(&self) -> Option<&str> {
        match &self.answer {
            Answer::Json { result, .. } => Some(result),
            Answer::Binary { .. } => None,
        }
    }

    /// The `"error"` code of an error reply.
    fn error(&self) -> Option<&str> {
        match &self.answer {
            Answer::Json { error, .. } => error.as_deref(),
            Answer::Binary { .. } => None,
        }
    }
}

/// Read exactly one reply frame (it must not be followed by more bytes in the same read).
fn read_reply(client: &mut Client) -> Result<Reply, String> {
    let complete = |got: &[u8]| !matches!(parse_frame(got, usize::MAX), Ok(None));
    let bytes = client
        .recv_until(complete)
        .map_err(|err| format!("no reply: {err}"))?;
    let (frame, used) = parse_frame(&bytes, usize::MAX)
        .map_err(|err| format!("bad reply: {err}"))?
        .expect("complete");
    if used != bytes.len() {
        return Err(format!("{} stray bytes after a reply", bytes.len() - used));
    }
    let (answer, _) = read_answer(&bytes, usize::MAX)?.expect("complete");
    Ok(Reply {
        byteorder: frame.header.byteorder,
        content_type: frame.header.content_type.clone(),
        content: frame.content.to_vec(),
        answer,
        bytes: bytes.clone(),
    })
}

/// After the client closes its side: the server closes too, with nothing more to say.
fn expect_close(client: &mut Client) -> Result<(), String> {
    client.shutdown_write().map_err(|err| err.to_string())?;
    match client.read_to_end() {
        Ok(rest) if rest.is_empty() => Ok(()),
        Ok(rest) => Err(format!("{} bytes after the last reply", rest.len())),
        Err(err) => Err(format!("no close: {err}")),
    }
}

/// The tutorial's three exchanges on one connection, then a clean close.
fn tutorial_visit(endpoint: &Endpoint) -> Result<(), String> {
    let mut client = Client::connect(endpoint).map_err(|err| format!("connect: {err}"))?;
    for (request, reply) in [
        (SEARCH_MORPHEUS, REPLY_MORPHEUS),
        (SEARCH_DOG, REPLY_DOG),
        (BINARY_REQUEST, BINARY_REPLY),
    ] {
        client.send(&hex(request)).map_err(|err| err.to_string())?;
        let got = read_reply(&mut client)?;
        let want = hex(reply);
        let (want_frame, _) = parse_frame(&want, usize::MAX).unwrap().unwrap();
        if got.content != want_frame.content || got.content_type != want_frame.header.content_type {
            return Err(format!("reply {got:?}"));
        }
        if got.byteorder != ByteOrder::HOST {
            return Err(format!("byteorder {:?}", got.byteorder));
        }
        if ByteOrder::HOST == ByteOrder::Little && got.bytes != want {
            return Err(format!(
                "not byte for byte: {:?}",
                String::from_utf8_lossy(&got.bytes)
            ));
        }
    }
    expect_close(&mut client)
}

#[test]
fn the_tutorial_exchanges_byte_for_byte_on_every_stream_and_strategy() {
    let serve = serve_matrix("");
    let mut failures = Vec::new();
    for &(name, _, _) in MATRIX {
        for round in 1..=2 {
            if let Err(err) = tutorial_visit(serve.endpoint(name)) {
                failures.push(format!("{name}, client {round}: {err}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{failures:#?}\nstderr:\n{}",
        serve.stderr()
    );
}

/// A miss and an unknown action read exactly as the tutorial's server words them (single quotes),
/// so its app-client prints the same line against either server.
#[test]
fn misses_and_unknown_actions_are_worded_as_the_tutorials_server_words_them() {
    let serve = serve_matrix("");
    for &(name, _, _) in MATRIX {
        let mut client = Client::connect(serve.endpoint(name)).unwrap();
        client.send(&search("neo")).unwrap();
        let miss = read_reply(&mut client).unwrap();
        assert_eq!(
            miss.content, br#"{"result": "No match for 'neo'."}"#,
            "{name}"
        );
        let find = request("text/json", "utf-8", br#"{"action": "find", "value": "x"}"#);
        client.send(&find).unwrap();
        let unknown = read_reply(&mut client).unwrap();
        let want = br#"{"result": "Error: invalid action 'find'."}"#;
        assert_eq!(unknown.content, want, "{name}");
    }
}

/// What a bad input must get: the error code, and whether the connection then goes on.
struct BadInput {
    name: &'static str,
    bytes: Vec<u8>,
    code: &'static str,
    goes_on: bool,
}

fn bad_inputs() -> Vec<BadInput> {
    let full = r#""byteorder": "big", "content-type": "text/json", "content-encoding": "utf-8""#;
    let case = |name, bytes, code, goes_on| BadInput {
        name,
        bytes,
        code,
        goes_on,
    };
    vec![
        case("zero header length", b"\x00\x00{}".to_vec(), "empty-header", false),
        case("header not JSON", raw(b"byteorder=big", b""), "bad-header", false),
        case("header not UTF-8", raw(b"{\"a\": \"\xff\"}", b""), "bad-header", false),
        case("header a JSON array", raw(b"[1]", b""), "bad-header", false),
        case(
            "content-length missing",
            raw(format!("{{{full}}}").as_bytes(), b""),
            "bad-header",
            false,
        ),
        case(
            "content-length mistyped",
            raw(format!(r#"{{{full}, "content-length": "2"}}"#).as_bytes(), b"{}"),
            "bad-header",
            false,
        ),
        case(
            "content-length above the maximum",
            raw(format!(r#"{{{full}, "content-length": 1048577}}"#).as_bytes(), b""),
            "content-too-large",
            false,
        ),
        case(
            "byteorder missing",
            raw(
                br#"{"content-type": "text/json", "content-encoding": "utf-8", "content-length": 2}"#,
                b"{}",
            ),
            "bad-header",
            true,
        ),
        case(
            "content-type mistyped",
            raw(
                br#"{"byteorder": "big", "content-type": 1, "content-encoding": "utf-8", "content-length": 2}"#,
                b"{}",
            ),
            "bad-header",
            true,
        ),
        case(
            "text content not UTF-8",
            request("text/json", "utf-8", b"{\"action\": \"\xff\"}"),
            "bad-content",
            true,
        ),
        case(
            "text content not JSON",
            request("text/json", "utf-8", b"{action: search}"),
            "bad-content",
            true,
        ),
        case(
            "search without a value",
            request("text/json", "utf-8", br#"{"action": "search"}"#),
            "bad-request",
            true,
        ),
    ]
}

/// Send `bad`, expect its error reply, then either a working connection or the server's close.
fn bad_visit(endpoint: &Endpoint, bad: &BadInput) -> Result<(), String> {
    let mut client = Client::connect(endpoint).map_err(|err| format!("connect: {err}"))?;
    client.send(&bad.bytes).map_err(|err| err.to_string())?;
    let reply = read_reply(&mut client)?;
    let result = reply.result().unwrap_or_default();
    if reply.error() != Some(bad.code) || !result.starts_with("Error: ") {
        return Err(format!("got {:?}", String::from_utf8_lossy(&reply.content)));
    }
    if !bad.goes_on {
        // The server shut its side after the error reply: end of stream, then we close.
        return match client.recv() {
            Ok(rest) if rest.is_empty() => Ok(()),
            Ok(rest) => Err(format!("{} bytes after the error reply", rest.len())),
            Err(err) => Err(format!("no close after the error reply: {err}")),
        };
    }
    client
        .send(&hex(SEARCH_MORPHEUS))
        .map_err(|err| err.to_string())?;
    let next = read_reply(&mut client)?;
    if next.result() != Some(MORPHEUS_RESULT) {
        return Err(format!("next reply {next:?}"));
    }
    expect_close(&mut client)
}

#[test]
fn every_bad_input_gets_an_error_reply_and_a_close_where_framing_is_lost() {
    let serve = serve_matrix("");
    let mut failures = Vec::new();
    for bad in bad_inputs() {
        for &(name, _, _) in MATRIX {
            if let Err(err) = bad_visit(serve.endpoint(name), &bad) {
                failures.push(format!("{}, {name}: {err}", bad.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{failures:#?}\nstderr:\n{}",
        serve.stderr()
    );
    let stderr = serve.stderr();
    assert!(
        stderr.contains("INFO") && stderr.contains("search request from"),
        "bad input is logged with the peer, as the peer's doing:\n{stderr}"
    );
}

#[test]
fn a_frame_cut_short_by_the_peer_gets_an_error_reply_and_a_close() {
    let serve = serve_matrix("");
    let morpheus = hex(SEARCH_MORPHEUS);
    for &(name, _, _) in MATRIX {
        for cut in [1, 50, 120] {
            let mut client = Client::connect(serve.endpoint(name)).unwrap();
            client.send(&morpheus[..cut]).unwrap();
            client.shutdown_write().unwrap();
            let reply = read_reply(&mut client).unwrap_or_else(|err| panic!("{name}: {err}"));
            assert_eq!(reply.error(), Some("truncated"), "{name}");
            assert_eq!(client.read_to_end().unwrap(), b"", "{name}");
        }
    }
}

#[test]
fn too_much_content_is_refused_before_it_is_sent_and_the_close_is_clean() {
    let serve = serve_matrix("max_content_length = 1000");
    let header = r#"{"byteorder": "big", "content-type": "binary/x", "content-encoding": "binary", "content-length": 2000000}"#;
    for &(name, _, _) in MATRIX {
        let mut client = Client::connect(serve.endpoint(name)).unwrap();
        client.send(&raw(header.as_bytes(), b"")).unwrap();
        let reply = read_reply(&mut client).unwrap();
        assert_eq!(reply.error(), Some("content-too-large"), "{name}");
        // A client that sends its content anyway still reads the reply and a clean end of stream.
        let mut writer = client.try_clone().unwrap();
        let sender = thread::spawn(move || {
            let _ = writer.send(&vec![b'x'; 2_000_000]);
            let _ = writer.shutdown_write();
        });
        // Every strategy drains what the client sends on before closing, so no reset.
        assert_eq!(client.read_to_end().unwrap(), b"", "{name}");
        sender.join().unwrap();
    }
}

#[test]
fn a_request_trickled_one_byte_at_a_time_gets_one_reply() {
    let serve = serve_matrix("");
    for &(name, _, _) in MATRIX {
        let mut client = Client::connect(serve.endpoint(name)).unwrap();
        if let Client::Tcp(stream) = &client {
            stream.set_nodelay(true).unwrap();
        }
        for byte in hex(SEARCH_DOG) {
            client.send(&[byte]).unwrap();
            thread::sleep(Duration::from_micros(200));
        }
        let reply = read_reply(&mut client).unwrap();
        if ByteOrder::HOST == ByteOrder::Little {
            assert_eq!(reply.bytes, hex(REPLY_DOG), "{name}");
        }
        expect_close(&mut client).unwrap();
    }
}

#[test]
fn two_requests_in_one_write_are_answered_in_order() {
    let serve = serve_matrix("");
    for &(name, _, _) in MATRIX {
        let mut client = Client::connect(serve.endpoint(name)).unwrap();
        client
            .send(&[hex(SEARCH_MORPHEUS), hex(SEARCH_DOG)].concat())
            .unwrap();
        let want = [hex(REPLY_MORPHEUS), hex(REPLY_DOG)].concat();
        let both = client.recv_until(|got| got.len() >= want.len()).unwrap();
        let (first, used) = parse_frame(&both, usize::MAX).unwrap().unwrap();
        assert_eq!(
            first.content,
            "{\"result\": \"Follow the white rabbit. 🐰\"}".as_bytes()
        );
        let (second, _) = parse_frame(&both[used..], usize::MAX).unwrap().unwrap();
        assert_eq!(
            second.content,
            "{\"result\": \"🐾 Playing ball! 🏐\"}".as_bytes()
        );
        if ByteOrder::HOST == ByteOrder::Little {
            assert_eq!(both, want, "{name}");
        }
        expect_close(&mut client).unwrap();
    }
}

/// Eight clients at once, a thousand requests each, every answer checked.
#[test]
fn eight_clients_times_a_thousand_requests_all_answered_right() {
    const CLIENTS: usize = 8;
    const REQUESTS: usize = 1000;
    let serve = serve_matrix("");
    let started = Instant::now();
    for name in ["tcp-threading", "unix-forking", "tcp-reactor", "unix-pool"] {
        let endpoint = serve.endpoint(name).clone();
        let clients: Vec<_> = (0..CLIENTS)
            .map(|id| {
                let endpoint = endpoint.clone();
                thread::spawn(move || -> Result<(), String> {
                    let mut client = Client::connect(&endpoint).map_err(|err| err.to_string())?;
                    for n in 0..REQUESTS {
                        let (query, want) = match (id + n) % 3 {
                            0 => ("morpheus".to_string(), MORPHEUS_RESULT.to_string()),
                            1 => ("🐶".to_string(), "🐾 Playing ball! 🏐".to_string()),
                            _ => {
                                let miss = format!("client {id} request {n}");
                                let want = format!("No match for '{miss}'.");
                                (miss, want)
                            }
                        };
                        client
                            .send(&search(&query))
                            .map_err(|err| err.to_string())?;
                        let reply = read_reply(&mut client)?;
                        if reply.result() != Some(want.as_str()) {
                            return Err(format!("client {id}, request {n}: {reply:?}"));
                        }
                    }
                    expect_close(&mut client)
                })
            })
            .collect();
        for (id, client) in clients.into_iter().enumerate() {
            let outcome = client.join().expect("client thread");
            assert!(outcome.is_ok(), "{name}, client {id}: {outcome:?}");
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "32 000 requests took {:?}",
        started.elapsed()
    );
}

#[test]
fn an_index_file_next_to_the_config_and_a_match_mode() {
    let dir = temp_dir();
    std::fs::write(
        dir.path().join("index.toml"),
        "socket = \"an endpoint\"\nsocketserver = \"a framework\"\nselect = \"readiness\"\n",
    )
    .unwrap();
    let text = config(&[(
        "prefix",
        "tcp://127.0.0.1:0",
        "search",
        "threading",
        "[server.options]\nindex = \"index.toml\"\nmatch = \"prefix\"\nlimit = 5",
    )]);
    let path = write_config(dir.path(), "search.toml", &text);
    let serve = ServeProcess::spawn(dir, &[path.as_os_str()], 1);
    let Endpoint::Tcp(addr) = serve.endpoint("prefix") else {
        panic!("not tcp")
    };
    let endpoint = format!("tcp://{addr}");
    let output = run(
        &["client", "search", &endpoint, "search", "SOCK"],
        b"",
        WAIT,
    );
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "socket: an endpoint\nsocketserver: a framework\n"
    );
    // The raw reply keeps "result" as the first hit and lists them all.
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut client = Client::Tcp(stream);
    client.send(&search("sel")).unwrap();
    let reply = read_reply(&mut client).unwrap();
    assert_eq!(
        String::from_utf8(reply.content).unwrap(),
        r#"{"result": "readiness", "results": [{"key": "select", "value": "readiness"}]}"#
    );
}

#[test]
fn check_refuses_search_on_datagram_endpoints() {
    let dir = temp_dir();
    let text = config(&[
        ("udp", "udp://127.0.0.1:0", "search", "", ""),
        ("dgram", "unix-dgram://{dir}/d.sock", "search", "", ""),
    ]);
    let path = write_config(dir.path(), "bad.toml", &text);
    let output = run(&["check", path.to_str().unwrap()], b"", WAIT);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for kind in ["udp", "unix-dgram"] {
        assert!(
            stderr.contains(&format!(
                "handler \"search\" does not serve {kind} endpoints"
            )),
            "{stderr}"
        );
    }
}

/// Pointed at a server that is not a search server (echo sends the request back; timestamp never
/// sends a frame), the client says so and fails instead of printing a blank line.
#[test]
fn the_client_says_when_the_server_is_not_a_search_server() {
    let rows = [
        ("echo", "tcp://127.0.0.1:0", "echo", "threading", ""),
        ("stamp", "tcp://127.0.0.1:0", "timestamp", "threading", ""),
    ];
    let serve = ServeProcess::start(&config(&rows));
    for name in ["echo", "stamp"] {
        let endpoint = serve.endpoint(name).to_string();
        let args = [
            "client",
            "search",
            &endpoint,
            "search",
            "morpheus",
            "--timeout",
            "1",
        ];
        let output = run(&args, b"", WAIT);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{name}: {output:?}");
        assert!(output.stdout.is_empty(), "{name}: {output:?}");
        assert!(stderr.contains("a search server?"), "{name}: {stderr}");
    }
}

#[test]
fn the_client_command_speaks_like_the_tutorial_app_client() {
    let serve = serve_matrix("");
    for name in ["tcp-threading", "unix-sync"] {
        let endpoint = serve.endpoint(name).to_string();
        let client = |action: &str, value: &str| {
            let output = run(&["client", "search", &endpoint, action, value], b"", WAIT);
            assert!(output.status.success(), "{output:?}");
            String::from_utf8(output.stdout).unwrap()
        };
        assert_eq!(client("search", "morpheus"), format!("{MORPHEUS_RESULT}\n"));
        assert_eq!(
            client("search", "ring"),
            "In the caves beneath the Misty Mountains. 💍\n"
        );
        assert_eq!(client("search", "neo"), "No match for 'neo'.\n");
        assert_eq!(
            client("binary", "😃"),
            "First 10 bytes of request: binary😃\n"
        );
        assert_eq!(client("find", "x"), "First 10 bytes of request: findx\n");
    }
    let refused = run(
        &["client", "search", "udp://127.0.0.1:9", "search", "x"],
        b"",
        WAIT,
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("search runs over streams"));
}
