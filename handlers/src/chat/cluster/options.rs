//! The `cluster` table of chat's options: where Redis is, how this instance is named, and the bounds
//! of the link. Without the table chat is one instance, exactly as before.
//!
//! ```toml
//! [server.options.cluster]
//! redis = "redis://127.0.0.1:6379/0"    # or "unix:///run/redis/redis.sock"
//! password_env = "SOCKSERV_REDIS_PASSWORD"
//! channel_prefix = "sockserv:chat"
//! node = "web-1"
//! ```

use std::time::Duration;

use sockserv_framework::config::OptionError;
use toml::{Table, Value};

/// Where every channel and key of one deployment starts, so that several share a Redis.
pub const DEFAULT_CHANNEL_PREFIX: &str = "sockserv:chat";
/// Messages waiting for the publisher thread: at the default `rate` (100 a second) that is 40
/// member-seconds of sending, far more than a Redis that answers at all lets pile up; beyond it a
/// message is dropped (counted) rather than wait or grow the queue.
pub const DEFAULT_PUBLISH_QUEUE: usize = 4096;
/// The longest wait between two attempts to reach Redis again (the backoff doubles from
/// [`FIRST_BACKOFF`] up to it).
pub const DEFAULT_RECONNECT_MAX: Duration = Duration::from_secs(5);
/// How long an instance's presence (its members, its nicks) outlives its last heartbeat; the
/// heartbeat comes every third of it.
pub const DEFAULT_PRESENCE_TTL: Duration = Duration::from_secs(15);
/// The first wait after a failed attempt to reach Redis.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);

const MAX_PUBLISH_QUEUE: usize = 1 << 20;
/// `reconnect_max`'s range in seconds.
const RECONNECT_RANGE: (f64, f64) = (0.1, 600.0);
/// `presence_ttl`'s range in seconds: below 0.3 s heartbeats would come every 100 ms.
const PRESENCE_RANGE: (f64, f64) = (0.3, 3600.0);
/// The longest node name or channel prefix, in bytes.
const MAX_NAME_BYTES: usize = 200;

const KEYS: &[&str] = &[
    "redis",
    "password_env",
    "channel_prefix",
    "node",
    "publish_queue",
    "reconnect_max",
    "presence_ttl",
];

/// The validated `cluster` table.
#[derive(Clone)]
pub struct ClusterOptions {
    /// `redis`: the server's URL (`redis://`, `rediss://` is refused, `unix://`, `redis+unix://`),
    /// with the password from `password_env` added.
    pub info: redis::ConnectionInfo,
    /// The URL as it may be logged: any password in it replaced by `***`.
    pub shown: String,
    /// `channel_prefix`: default [`DEFAULT_CHANNEL_PREFIX`].
    pub channel_prefix: String,
    /// `node`: this instance's name in messages and presence; default `HOST-PID`.
    pub node: String,
    /// `publish_queue`: messages waiting to be published; default [`DEFAULT_PUBLISH_QUEUE`].
    pub publish_queue: usize,
    /// `reconnect_max`: the backoff's cap; default [`DEFAULT_RECONNECT_MAX`].
    pub reconnect_max: Duration,
    /// `presence_ttl`: default [`DEFAULT_PRESENCE_TTL`].
    pub presence_ttl: Duration,
}

impl std::fmt::Debug for ClusterOptions {
    // No password in a debug print either.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterOptions")
            .field("redis", &self.shown)
            .field("channel_prefix", &self.channel_prefix)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl ClusterOptions {
    /// The heartbeat's period: a third of the presence's lifetime, so two may be late.
    pub fn heartbeat(&self) -> Duration {
        self.presence_ttl / 3
    }

    /// Reads the `cluster` value of chat's options.
    ///
    /// # Errors
    ///
    /// Every problem, each naming `cluster.KEY`: a value that is not a table, an unknown key, a
    /// missing `redis`, a URL redis-rs cannot use, a TLS URL (not built in), an unset
    /// `password_env`, a blank or over-long name, a number out of range.
    pub fn from_value(value: &Value) -> Result<ClusterOptions, Vec<OptionError>> {
        let Value::Table(table) = value else {
            let message = format!(
                "option \"cluster\" must be a table (redis = \"redis://HOST:PORT\", ...), not {}",
                value.type_str()
            );
            return Err(vec![OptionError::value("cluster", message)]);
        };
        let mut problems: Vec<OptionError> = table
            .keys()
            .filter(|key| !KEYS.contains(&key.as_str()))
            .map(|key| {
                let message = format!(
                    "unknown option \"cluster.{key}\" (cluster takes: {})",
                    KEYS.join(", ")
                );
                OptionError::unknown_key("cluster", message)
            })
            .collect();
        let p = &mut problems;
        let info = note(p, connection(table));
        let channel_prefix = note(p, name(table, "channel_prefix"));
        let node = note(p, name(table, "node"));
        let publish_queue = note(p, count(table, "publish_queue", MAX_PUBLISH_QUEUE));
        let reconnect_max = note(p, seconds(table, "reconnect_max", RECONNECT_RANGE));
        let presence_ttl = note(p, seconds(table, "presence_ttl", PRESENCE_RANGE));
        match (
            info,
            channel_prefix,
            node,
            publish_queue,
            reconnect_max,
            presence_ttl,
        ) {
            (Some((info, shown)), Some(prefix), Some(node), Some(queue), Some(max), Some(ttl))
                if problems.is_empty() =>
            {
                Ok(ClusterOptions {
                    info,
                    shown,
                    channel_prefix: prefix.unwrap_or_else(|| DEFAULT_CHANNEL_PREFIX.to_string()),
                    node: node.unwrap_or_else(default_node),
                    publish_queue: queue.unwrap_or(DEFAULT_PUBLISH_QUEUE),
                    reconnect_max: max.unwrap_or(DEFAULT_RECONNECT_MAX),
                    presence_ttl: ttl.unwrap_or(DEFAULT_PRESENCE_TTL),
                })
            }
            _ => Err(problems),
        }
    }
}

/// The value of `result`, or `None` once its problem is noted (under the key `cluster`).
fn note<T>(problems: &mut Vec<OptionError>, result: Result<T, String>) -> Option<T> {
    result
        .map_err(|message| problems.push(OptionError::value("cluster", message)))
        .ok()
}

/// `HOST-PID`: the host's name (from /proc, else `localhost`) and this process's id.
fn default_node() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    format!("{host}-{}", std::process::id())
}

/// `url` with whatever stands between `://` and `@` (a user and password) replaced by `***`, and a
/// `password=` or `pass=` query value too: what may go into a log line.
pub fn redact(url: &str) -> String {
    let mut shown = match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    };
    for key in ["password=", "pass="] {
        if let Some(start) = shown.find(key) {
            let value = start + key.len();
            let end = shown[value..].find('&').map_or(shown.len(), |n| value + n);
            shown.replace_range(value..end, "***");
        }
    }
    shown
}

/// `redis` (required) and `password_env`: the connection info, and the URL as it may be shown.
fn connection(table: &Table) -> Result<(redis::ConnectionInfo, String), String> {
    let url = match table.get("redis") {
        Some(Value::String(url)) => url,
        Some(other) => {
            return Err(format!(
                "option \"cluster.redis\" must be a URL string, not {}",
                other.type_str()
            ))
        }
        None => {
            return Err(
                "option \"cluster.redis\" is missing: the Redis server's URL, such as \
                        \"redis://127.0.0.1:6379/0\" or \"unix:///run/redis/redis.sock\""
                    .to_string(),
            )
        }
    };
    let shown = redact(url);
    if url.starts_with("rediss://") || url.starts_with("valkeys://") {
        return Err(format!(
            "option \"cluster.redis\": {shown:?} asks for TLS, which this build does not have"
        ));
    }
    let client = redis::Client::open(url.as_str())
        .map_err(|err| format!("option \"cluster.redis\": {shown:?} is not usable: {err}"))?;
    let mut info = client.get_connection_info().clone();
    let password = match table.get("password_env") {
        None => None,
        Some(Value::String(var)) => match std::env::var(var) {
            Ok(password) => Some(password),
            Err(_) => {
                return Err(format!(
                    "option \"cluster.password_env\": the environment variable {var:?} is not set \
                     (or not UTF-8)"
                ))
            }
        },
        Some(other) => {
            return Err(format!(
                "option \"cluster.password_env\" must name an environment variable, not {}",
                other.type_str()
            ))
        }
    };
    if let Some(password) = password {
        let settings = info.redis_settings().clone().set_password(password);
        info = info.set_redis_settings(settings);
    }
    Ok((info, shown))
}

/// A name under `key` (node, channel prefix): 1 to 200 bytes, no spaces or control characters.
fn name(table: &Table, key: &str) -> Result<Option<String>, String> {
    match table.get(key) {
        None => Ok(None),
        Some(Value::String(name))
            if !name.is_empty()
                && name.len() <= MAX_NAME_BYTES
                && !name.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            Ok(Some(name.clone()))
        }
        Some(other) => Err(format!(
            "option \"cluster.{key}\" must be 1 to {MAX_NAME_BYTES} bytes without spaces or \
             control characters, not {other}"
        )),
    }
}

fn count(table: &Table, key: &str, max: usize) -> Result<Option<usize>, String> {
    match table.get(key) {
        None => Ok(None),
        Some(Value::Integer(n)) if (1..=max as i64).contains(n) => Ok(Some(*n as usize)),
        Some(other) => Err(format!(
            "option \"cluster.{key}\" must be a whole number from 1 to {max}, not {other}"
        )),
    }
}

fn seconds(table: &Table, key: &str, (low, high): (f64, f64)) -> Result<Option<Duration>, String> {
    let value = match table.get(key) {
        None => return Ok(None),
        Some(Value::Integer(n)) => *n as f64,
        Some(Value::Float(x)) => *x,
        Some(other) => {
            return Err(format!(
                "option \"cluster.{key}\" must be a number of seconds, not {}",
                other.type_str()
            ))
        }
    };
    if value.is_finite() && (low..=high).contains(&value) {
        return Ok(Some(Duration::from_secs_f64(value)));
    }
    Err(format!(
        "option \"cluster.{key}\" must be from {low} to {high} seconds, got {value}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ClusterOptions, Vec<OptionError>> {
        let table: Table = text.parse().unwrap();
        ClusterOptions::from_value(&Value::Table(table))
    }

    #[test]
    fn a_url_alone_takes_every_default() {
        let options = parse("redis = 'redis://127.0.0.1:6379/0'").unwrap();
        assert_eq!(options.channel_prefix, DEFAULT_CHANNEL_PREFIX);
        assert!(options.node.ends_with(&format!("-{}", std::process::id())));
        assert_eq!(options.publish_queue, DEFAULT_PUBLISH_QUEUE);
        assert_eq!(options.heartbeat(), Duration::from_secs(5));
        assert_eq!(options.info.redis_settings().db(), 0);
    }

    #[test]
    fn unix_urls_and_every_key_are_read() {
        let options = parse(
            "redis = 'unix:///run/redis.sock'\nchannel_prefix = 'x'\nnode = 'n1'\n\
             publish_queue = 7\nreconnect_max = 0.5\npresence_ttl = 3",
        )
        .unwrap();
        assert!(matches!(
            options.info.addr(),
            redis::ConnectionAddr::Unix(path) if path.to_str() == Some("/run/redis.sock")
        ));
        assert_eq!((options.node.as_str(), options.publish_queue), ("n1", 7));
        assert_eq!(options.reconnect_max, Duration::from_millis(500));
        assert_eq!(options.heartbeat(), Duration::from_secs(1));
    }

    #[test]
    fn the_password_comes_from_the_environment_and_is_never_shown() {
        std::env::set_var("SOCKSERV_TEST_REDIS_PW", "s3cret");
        let options =
            parse("redis = 'redis://:inurl@127.0.0.1:1/'\npassword_env = 'SOCKSERV_TEST_REDIS_PW'")
                .unwrap();
        assert_eq!(options.info.redis_settings().password(), Some("s3cret"));
        assert_eq!(options.shown, "redis://***@127.0.0.1:1/");
        assert!(!format!("{options:?}").contains("s3cret"));
        let errors = parse("redis = 'redis://h'\npassword_env = 'SOCKSERV_TEST_UNSET_VAR'")
            .err()
            .unwrap();
        assert!(errors[0].message.contains("is not set"), "{errors:?}");
    }

    #[test]
    fn redaction_covers_user_info_and_query_passwords() {
        assert_eq!(redact("redis://u:p@h:1/0"), "redis://***@h:1/0");
        assert_eq!(
            redact("unix:///s.sock?db=1&pass=p"),
            "unix:///s.sock?db=1&pass=***"
        );
        assert_eq!(redact("redis://h:1"), "redis://h:1");
    }

    #[test]
    fn every_problem_is_reported() {
        let errors = parse(
            "channel_prefix = ''\nnode = 'a b'\npublish_queue = 0\nreconnect_max = 'x'\ncolour = 1",
        )
        .err()
        .unwrap();
        let text: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(errors.len(), 6, "{text:?}");
        assert!(text
            .iter()
            .any(|t| t.contains("\"cluster.redis\" is missing")));
        assert!(text
            .iter()
            .any(|t| t.contains("unknown option \"cluster.colour\"")));
        let errors = parse("redis = 'rediss://h'").err().unwrap();
        assert!(errors[0].message.contains("TLS"), "{errors:?}");
        let errors = parse("redis = 'http://h'").err().unwrap();
        assert!(errors[0].message.contains("not usable"), "{errors:?}");
        let not_table = ClusterOptions::from_value(&Value::Integer(1))
            .err()
            .unwrap();
        assert!(not_table[0].message.contains("must be a table"));
    }
}
