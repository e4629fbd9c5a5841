//! `[[plugin]]` tables: load each library (relative paths against the config file's folder) and
//! register its handlers, so that the servers below can name them like built-ins. A refused plugin is
//! one config error with its place; the rest of the file is still checked.

use std::path::Path;

use super::error::{ConfigError, ConfigErrorKind, Source};
use super::limits::DISABLE_AFTER_PANICS;
use super::raw::RawPlugin;
use crate::plugin::{self, LoadedPlugin, PanicPolicy};
use crate::Registry;

/// Load every plugin into `registry`; returns those that loaded, and pushes a problem per refusal.
pub(super) fn load_plugins(
    raw: &[RawPlugin],
    source: &Source<'_>,
    base_dir: &Path,
    registry: &mut Registry,
    errors: &mut Vec<ConfigError>,
) -> Vec<LoadedPlugin> {
    let mut loaded = Vec::new();
    for table in raw {
        match load_one(table, source, base_dir, registry) {
            Ok(plugin) => loaded.push(plugin),
            Err((span, kind)) => {
                // `sockserv_plugin_load_failures_total`: seen after a reload that failed so.
                crate::metrics::plugin_load_failed();
                errors.push(source.error(Some(span), None, kind));
            }
        }
    }
    loaded
}

type Problem = (std::ops::Range<usize>, ConfigErrorKind);

fn load_one(
    table: &RawPlugin,
    source: &Source<'_>,
    base_dir: &Path,
    registry: &mut Registry,
) -> Result<LoadedPlugin, Problem> {
    let policy = policy(table, source)?;
    let path = base_dir.join(table.path.get_ref());
    // A `[[plugin]]` table is the operator's declaration that the library is trusted code.
    let plugin = plugin::load_trusted_by_config(&path)
        .map_err(|err| (table.path.span(), ConfigErrorKind::Plugin(err)))?;
    for entry in plugin.entries(policy) {
        registry
            .register(entry)
            .map_err(|err| (table.path.span(), ConfigErrorKind::PluginHandler(err)))?;
    }
    log::debug!(
        "loaded plugin {} {} from {}",
        plugin.name,
        plugin.version,
        path.display()
    );
    Ok(plugin)
}

/// `disable_after_panics`: a count from 1 to [`DISABLE_AFTER_PANICS`]'s bound.
fn policy(table: &RawPlugin, source: &Source<'_>) -> Result<PanicPolicy, Problem> {
    let Some(count) = &table.disable_after_panics else {
        return Ok(PanicPolicy::default());
    };
    let n = usize::try_from(*count.get_ref()).ok();
    if let Some(n) = n.filter(|n| (1..=DISABLE_AFTER_PANICS.max).contains(n)) {
        return Ok(PanicPolicy {
            disable_after: Some(n),
        });
    }
    let written = source.text.get(count.span()).unwrap_or_default();
    let kind = ConfigErrorKind::BadValue {
        key: "disable_after_panics",
        message: DISABLE_AFTER_PANICS.message(written),
    };
    Err((count.span(), kind))
}
