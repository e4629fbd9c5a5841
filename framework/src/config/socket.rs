//! Phase 2 for `[server.socket]` (and the other keys that only some endpoints understand): each option
//! becomes its [`SocketOptions`] field, and an option written for an endpoint it means nothing to —
//! `nodelay` on UDP, `v6only` on IPv4, `unix_mode` on TCP — is refused rather than silently ignored,
//! so what the file says is what the socket gets.

use toml::Spanned;

use super::error::ConfigErrorKind;
use super::limits::{BUFFER_SIZE, REQUEST_QUEUE_SIZE};
use super::raw::OctalMode;
use super::server::ServerCheck;
use crate::settings::limits::UNIX_MODE as MAX_UNIX_MODE;
use crate::{Endpoint, SocketKind, SocketOptions};

/// Which endpoints a key means something for.
pub(super) struct Rule {
    /// The key, as the config names it in messages (`socket.nodelay`).
    pub key: &'static str,
    pub applies_to: &'static str,
    pub test: fn(&Endpoint) -> bool,
}

const NODELAY: Rule = Rule {
    key: "socket.nodelay",
    applies_to: "tcp endpoints",
    test: |endpoint| endpoint.kind() == SocketKind::Tcp,
};

const V6ONLY: Rule = Rule {
    key: "socket.v6only",
    applies_to: "IPv6 addresses",
    test: |endpoint| endpoint.inet().is_some_and(|addr| addr.is_ipv6()),
};

const UNIX_MODE: Rule = Rule {
    key: "socket.unix_mode",
    applies_to: "unix and unix-dgram endpoints",
    test: |endpoint| endpoint.path().is_some(),
};

const OWNER: Rule = Rule {
    key: "socket.owner",
    applies_to: "unix and unix-dgram endpoints with a socket file",
    test: |endpoint| endpoint.path().is_some(),
};

const GROUP: Rule = Rule {
    key: "socket.group",
    applies_to: "unix and unix-dgram endpoints with a socket file",
    test: |endpoint| endpoint.path().is_some(),
};

/// The listen backlog exists only on stream sockets.
const STREAM_ONLY: Rule = Rule {
    key: "socket.request_queue_size",
    applies_to: "stream (tcp and unix) endpoints",
    test: |endpoint| endpoint.kind().is_stream(),
};

/// A packet size limit exists only on datagram sockets.
pub(super) const DATAGRAM_ONLY: Rule = Rule {
    key: "max_packet_size",
    applies_to: "datagram (udp and unix-dgram) endpoints",
    test: |endpoint| !endpoint.kind().is_stream(),
};

impl ServerCheck<'_, '_> {
    /// The socket options, defaults where the file says nothing or something wrong.
    pub(super) fn socket_options(&mut self) -> SocketOptions {
        let defaults = self
            .endpoint
            .as_ref()
            .map_or_else(SocketOptions::default, |endpoint| {
                SocketOptions::for_kind(endpoint.kind())
            });
        let raw = &self.raw.socket;
        let queue = self.applicable(raw.request_queue_size.as_ref(), &STREAM_ONLY);
        let queue = self.count(queue.as_ref(), STREAM_ONLY.key, REQUEST_QUEUE_SIZE);
        let recv_buffer_size = raw.recv_buffer_size.as_ref();
        let send_buffer_size = raw.send_buffer_size.as_ref();
        let nodelay = self.applicable(raw.nodelay.as_ref(), &NODELAY);
        let v6only = self.applicable(raw.v6only.as_ref(), &V6ONLY);
        SocketOptions {
            reuse_address: raw.reuse_address.unwrap_or(defaults.reuse_address),
            reuse_port: raw.reuse_port.unwrap_or(defaults.reuse_port),
            nodelay: nodelay.map(Spanned::into_inner),
            recv_buffer_size: self.count(recv_buffer_size, "socket.recv_buffer_size", BUFFER_SIZE),
            send_buffer_size: self.count(send_buffer_size, "socket.send_buffer_size", BUFFER_SIZE),
            // Within REQUEST_QUEUE_SIZE, so it fits.
            request_queue_size: queue.map_or(defaults.request_queue_size, |queue| queue as i32),
            v6only: v6only.map(Spanned::into_inner),
            unix_mode: self.unix_mode(),
            unix_owner: self.unix_id(true),
            unix_group: self.unix_id(false),
        }
    }

    /// The value, unless `rule` says it means nothing for this endpoint (then reported). An endpoint
    /// that did not parse lets every value through: its own error is reported already.
    pub(super) fn applicable<T: Clone>(
        &mut self,
        value: Option<&Spanned<T>>,
        rule: &Rule,
    ) -> Option<Spanned<T>> {
        let value = value?;
        let endpoint = self.endpoint.as_ref();
        if let Some(endpoint) = endpoint.filter(|endpoint| !(rule.test)(endpoint)) {
            let kind = ConfigErrorKind::NotForEndpoint {
                key: rule.key,
                endpoint: endpoint.to_string(),
                applies_to: rule.applies_to,
            };
            self.report(value.span(), kind);
            return None;
        }
        Some(value.clone())
    }

    /// `owner` (or `group`): a user (group) name or a numeric id, for a Unix socket file; the name
    /// is looked up now, so `check` says when it does not exist here.
    fn unix_id(&mut self, owner: bool) -> Option<u32> {
        let (value, rule) = if owner {
            (self.raw.socket.owner.as_ref(), &OWNER)
        } else {
            (self.raw.socket.group.as_ref(), &GROUP)
        };
        let value = self.applicable(value, rule)?;
        let text = value.get_ref();
        if let Ok(id) = text.parse::<u32>() {
            return Some(id);
        }
        let found = if owner {
            nix::unistd::User::from_name(text).map(|u| u.map(|u| u.uid.as_raw()))
        } else {
            nix::unistd::Group::from_name(text).map(|g| g.map(|g| g.gid.as_raw()))
        };
        let what = if owner { "user" } else { "group" };
        let message = match found {
            Ok(Some(id)) => return Some(id),
            Ok(None) => format!("no {what} named {text:?} on this machine"),
            Err(err) => format!("cannot look up {what} {text:?}: {err}"),
        };
        let kind = ConfigErrorKind::BadValue {
            key: rule.key,
            message,
        };
        self.report(value.span(), kind);
        None
    }

    /// `unix_mode`: an octal string (`"0660"`, `"660"` or `"0o660"`) of permission bits only,
    /// Unix endpoints only.
    fn unix_mode(&mut self) -> Option<u32> {
        let value = self.applicable(self.raw.socket.unix_mode.as_ref(), &UNIX_MODE)?;
        let OctalMode(text) = value.get_ref();
        let message = match parse_mode(text) {
            Some(mode) if mode <= MAX_UNIX_MODE => return Some(mode),
            Some(_) => format!(
                "{text:?} has bits beyond the permission bits: write a mode from \"0000\" to \
                 \"0{MAX_UNIX_MODE:o}\" (setuid, setgid and sticky mean nothing on a socket file)"
            ),
            None => format!(
                "{text:?} is not an octal mode: write one from \"0000\" to \"0{MAX_UNIX_MODE:o}\", \
                 such as \"0660\""
            ),
        };
        let kind = ConfigErrorKind::BadValue {
            key: UNIX_MODE.key,
            message,
        };
        self.report(value.span(), kind);
        None
    }
}

/// Octal digits, with or without a `0o` prefix; the range is checked apart, to say which is wrong.
fn parse_mode(text: &str) -> Option<u32> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u32::from_str_radix(digits, 8).ok()
}

#[cfg(test)]
mod tests {
    use super::parse_mode;

    #[test]
    fn modes_are_octal() {
        assert_eq!(parse_mode("0660"), Some(0o660));
        assert_eq!(parse_mode("660"), Some(0o660));
        assert_eq!(
            parse_mode("0o1777"),
            Some(0o1777),
            "parsed, refused by the range"
        );
        for bad in [
            "",
            "0o",
            "0x1f",
            "0680",
            "+660",
            "-660",
            "777777777777",
            "rw-rw----",
        ] {
            assert_eq!(parse_mode(bad), None, "{bad:?}");
        }
    }
}
