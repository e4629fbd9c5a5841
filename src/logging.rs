//! Where log lines go and how they look: stderr, filtered by `RUST_LOG` (default `info`), as
//! env_logger's text for people or, with `--log-format json` (`SOCKSERV_LOG_FORMAT=json`), as one
//! JSON object per line for log collectors.
//!
//! A JSON line has `ts` (RFC 3339, UTC, milliseconds), `level`, `target` (the module that logged)
//! and `message` (the text line's message, whole), then the line's structured fields where it has
//! them: `server`, `conn` (the connection's id, `c12`), `peer` and `reason` (a close's or a
//! refusal's, as the metrics' `reason` label writes it).

use std::io::Write;

use log::kv::{Key, Value, VisitSource, VisitValue};
use serde_json::{Map, Value as Json};

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// env_logger's text: `[time LEVEL target] message`.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Install the logger: `RUST_LOG` (default `info`) filters, `format` writes.
pub fn init(format: Format) {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if format == Format::Json {
        builder.format(|out, record| {
            let line = json_line(record);
            writeln!(out, "{line}")
        });
    }
    builder.init();
}

/// One record as a JSON object.
fn json_line(record: &log::Record<'_>) -> Json {
    let mut object = Map::new();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    object.insert("ts".into(), now.into());
    object.insert("level".into(), record.level().as_str().into());
    object.insert("target".into(), record.target().into());
    object.insert("message".into(), record.args().to_string().into());
    let mut fields = Fields(&mut object);
    // Visiting our own map cannot fail.
    let _ = record.key_values().visit(&mut fields);
    Json::Object(object)
}

/// Copies a record's key-values into the object: numbers and booleans as such, absent values
/// (`None`) left out, everything else as text. A key never overwrites the four fixed ones.
struct Fields<'a>(&'a mut Map<String, Json>);

impl<'kvs> VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        let key = key.as_str();
        if matches!(key, "ts" | "level" | "target" | "message") {
            return Ok(());
        }
        let mut json = None;
        value.visit(ToJson(&mut json))?;
        if let Some(json) = json {
            self.0.insert(key.to_string(), json);
        }
        Ok(())
    }
}

/// One value as JSON (`None`: a null value, left out).
struct ToJson<'a>(&'a mut Option<Json>);

impl<'v> VisitValue<'v> for ToJson<'_> {
    fn visit_any(&mut self, value: Value<'_>) -> Result<(), log::kv::Error> {
        *self.0 = Some(Json::from(value.to_string()));
        Ok(())
    }

    fn visit_null(&mut self) -> Result<(), log::kv::Error> {
        Ok(())
    }

    fn visit_u64(&mut self, value: u64) -> Result<(), log::kv::Error> {
        *self.0 = Some(Json::from(value));
        Ok(())
    }

    fn visit_i64(&mut self, value: i64) -> Result<(), log::kv::Error> {
        *self.0 = Some(Json::from(value));
        Ok(())
    }

    fn visit_bool(&mut self, value: bool) -> Result<(), log::kv::Error> {
        *self.0 = Some(Json::from(value));
        Ok(())
    }

    fn visit_str(&mut self, value: &str) -> Result<(), log::kv::Error> {
        *self.0 = Some(Json::from(value));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_with_fields_becomes_one_object() {
        let conn = 12u64;
        let absent: Option<&str> = None;
        let kvs: [(&str, Value<'_>); 4] = [
            ("server", Value::from("echo")),
            ("conn", Value::from_display(&"c12")),
            ("count", Value::from(conn)),
            ("reason", log::kv::ToValue::to_value(&absent)),
        ];
        let args = format_args!("echo: c12: hello \"there\"\nnext");
        let record = log::Record::builder()
            .args(args)
            .level(log::Level::Info)
            .target("sockserv_framework::request")
            .key_values(&kvs)
            .build();
        let line = json_line(&record).to_string();
        assert!(!line.contains('\n'), "one line: {line}");
        let parsed: Json = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["level"], "INFO");
        assert_eq!(parsed["target"], "sockserv_framework::request");
        assert_eq!(parsed["message"], "echo: c12: hello \"there\"\nnext");
        assert_eq!(parsed["server"], "echo");
        assert_eq!(parsed["conn"], "c12");
        assert_eq!(parsed["count"], 12);
        assert!(
            parsed.get("reason").is_none(),
            "an absent field is left out: {line}"
        );
        assert!(parsed["ts"].as_str().unwrap().ends_with('Z'));
    }
}
