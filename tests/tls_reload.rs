//! Certificate rotation on SIGHUP, from the outside: with 200 TLS connections open on each of a
//! threading and a reactor server (and a few on a forking one), the certificate files are
//! replaced and SIGHUP sent. Every open connection goes on (its handshake is done, its
//! certificate its own); a new handshake sees the new certificate. Then a bad certificate (a key
//! that does not match) is put in place: the reload is refused with a log line, and new
//! handshakes keep the last good one.

mod common;
mod tls_support;

use std::fs;
use std::path::Path;

use common::{config, eventually, temp_dir, write_config, ServeProcess, WAIT};
use tls_support::{client_config, connect, echo, server_common_name, Ca, Issued, Tls};

const OPEN_PER_SERVER: usize = 200;
const OPEN_FORKED: usize = 10;

/// Replace `server.pem` and `server.key` in `dir` the way an operator's tool does: write beside,
/// then rename over, so a reader never sees half a file.
fn install(dir: &Path, cert: &str, key: &str) {
    for (name, text) in [("server.pem", cert), ("server.key", key)] {
        let staged = dir.join(format!("{name}.new"));
        fs::write(&staged, text).unwrap();
        fs::rename(&staged, dir.join(name)).unwrap();
    }
}

#[test]
fn rotation_keeps_open_connections_and_new_handshakes_see_the_new_certificate() {
    let dir = temp_dir();
    let ca = Ca::new("sockserv test CA");
    let first = ca.server("first", &[]);
    install(dir.path(), &first.cert, &first.key);
    let tls = "[server.tls]\ncert = \"server.pem\"\nkey = \"server.key\"\n";
    let text = config(&[
        ("threads", "tcp://127.0.0.1:0", "echo", "threading", tls),
        ("loop", "unix://{dir}/loop.sock", "echo", "reactor", tls),
        ("fork", "tcp://127.0.0.1:0", "echo", "forking", tls),
    ]);
    let path = write_config(dir.path(), "sockserv.toml", &text);
    let dir_path = dir.path().to_path_buf();
    let mut serve = ServeProcess::spawn(dir, &[path.as_os_str()], 3);
    let client = client_config(&ca.pem(), None, &[]);
    let counts = [
        ("threads", OPEN_PER_SERVER),
        ("loop", OPEN_PER_SERVER),
        ("fork", OPEN_FORKED),
    ];
    let mut open: Vec<(&str, Tls)> = Vec::new();
    for (name, count) in counts {
        for _ in 0..count {
            let mut conn = connect(serve.endpoint(name), &client)
                .unwrap_or_else(|err| panic!("{name}: {err}\n{}", serve.stderr()));
            assert_eq!(echo(&mut conn, b"before\n").unwrap(), b"before\n");
            assert_eq!(server_common_name(&conn), "first");
            open.push((name, conn));
        }
    }

    let rotated = ca.server("rotated", &[]);
    install(&dir_path, &rotated.cert, &rotated.key);
    serve.signal("HUP");
    for (name, _) in counts {
        let sees_new = eventually(WAIT, || {
            connect(serve.endpoint(name), &client)
                .is_ok_and(|conn| server_common_name(&conn) == "rotated")
        });
        assert!(sees_new, "{name}: no new certificate\n{}", serve.stderr());
    }
    for (name, conn) in &mut open {
        let back = echo(conn, b"after the rotation\n")
            .unwrap_or_else(|err| panic!("{name}: an open connection dropped: {err}"));
        assert_eq!(back, b"after the rotation\n", "{name}");
        assert_eq!(server_common_name(conn), "first", "{name}");
    }

    // A key that is not the certificate's: refused, the rotated certificate stays.
    let stranger = ca.server("stranger", &[]);
    let bad = Issued {
        cert: stranger.cert,
        key: rotated.key.clone(),
    };
    install(&dir_path, &bad.cert, &bad.key);
    serve.signal("HUP");
    // The reload reads the config and its files, and refuses the whole of it, with the place.
    let refused = eventually(WAIT, || {
        let stderr = serve.stderr();
        stderr.contains("reload refused") && stderr.contains("does not match the certificate")
    });
    assert!(refused, "{}", serve.stderr());
    for (name, _) in counts {
        let conn = connect(serve.endpoint(name), &client).unwrap();
        assert_eq!(server_common_name(&conn), "rotated", "{name}");
    }
    for (name, conn) in &mut open {
        assert_eq!(echo(conn, b"still\n").unwrap(), b"still\n", "{name}");
    }
    drop(open);
    assert!(serve.terminate().success(), "{}", serve.stderr());
}
