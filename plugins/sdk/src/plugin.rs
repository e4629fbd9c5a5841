//! What a plugin author implements beside [`RequestHandler`]: how options are read and how a handler
//! is made for each request, plus the macro that exports handlers through the C ABI.

use std::sync::Arc;

use crate::abi::{KIND_DATAGRAM, KIND_STREAM, STRATEGY_FORKING, STRATEGY_SYNC, STRATEGY_THREADING};
use crate::{RequestHandler, Session, SessionInfo};

/// A handler a plugin exports: the same [`RequestHandler`] the built-ins implement, plus a name, an
/// options type and a constructor. One handler is made per request, from options parsed once.
///
/// ```
/// use std::io::Write;
/// use std::sync::Arc;
///
/// use sockserv_plugin::{HandlerResult, PluginHandler, Request, RequestHandler};
///
/// struct Options { greeting: String }
///
/// struct Hello { options: Arc<Options> }
///
/// impl RequestHandler for Hello {
///     fn handle(&mut self, req: &mut Request<'_>) -> HandlerResult {
///         writeln!(req.wfile, "{}", self.options.greeting)?;
///         Ok(())
///     }
/// }
///
/// impl PluginHandler for Hello {
///     type Options = Options;
///     const NAME: &'static str = "hello";
///     // With the SDK's `serde` feature, `sockserv_plugin::from_json(json)` reads a
///     // `#[derive(Deserialize)]` struct instead.
///     fn options(json: &str) -> Result<Options, String> {
///         let greeting = json.trim().trim_start_matches('{').trim_end_matches('}');
///         Ok(Options { greeting: greeting.to_string() })
///     }
///     fn new(options: &Arc<Options>) -> Self { Hello { options: Arc::clone(options) } }
/// }
///
/// let options = Arc::new(Hello::options("{hi}").unwrap());
/// assert_eq!(options.greeting, "hi");
/// let _handler = Hello::new(&options);
/// ```
pub trait PluginHandler: RequestHandler + Sized + 'static {
    /// The handler's options, read from the server's `[server.options]` table.
    type Options: Send + Sync + 'static;
    /// The name a config uses: `handler = "NAME"`.
    const NAME: &'static str;
    /// One line for `sockserv plugins`.
    const SUMMARY: &'static str = "";
    /// `abi::KIND_*` flags: streams, datagrams or both.
    const SOCKET_KINDS: u32 = KIND_STREAM | KIND_DATAGRAM;
    /// `abi::STRATEGY_*` flags: the strategies the handler can run under.
    const STRATEGIES: u32 = STRATEGY_SYNC | STRATEGY_THREADING | STRATEGY_FORKING;

    /// Parse the options (the config's table as a JSON object) or say what is wrong with them.
    fn options(json: &str) -> Result<Self::Options, String>;

    /// [`options`](Self::options), for a handler whose options name files: `config_dir` is the
    /// folder of the config file that names the handler (absolute), against which relative paths
    /// are resolved. A host older than ABI 1.3 does not know the folder and calls `options`.
    /// Default: `options(json)`.
    fn options_in(json: &str, config_dir: &std::path::Path) -> Result<Self::Options, String> {
        let _ = config_dir;
        Self::options(json)
    }

    /// A handler for one request.
    fn new(options: &Arc<Self::Options>) -> Self;

    /// An event-driven session for one connection, for the reactor strategy. Implement it and add
    /// `abi::STRATEGY_REACTOR` to `STRATEGIES`. Default: none.
    fn new_session(
        _options: &Arc<Self::Options>,
        _info: &SessionInfo<'_>,
    ) -> Option<Box<dyn Session>> {
        None
    }
}

/// Deserialize options with serde (feature `serde`): unknown or mistyped keys give serde's message.
#[cfg(feature = "serde")]
pub fn from_json<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, String> {
    serde_json::from_str(json).map_err(|err| err.to_string())
}

/// Export a plugin: its name, its version and the [`PluginHandler`] types it provides.
///
/// ```
/// # use std::sync::Arc;
/// # use sockserv_plugin::{HandlerResult, PluginHandler, Request, RequestHandler};
/// # struct Kv;
/// # impl RequestHandler for Kv {
/// #     fn handle(&mut self, _req: &mut Request<'_>) -> HandlerResult { Ok(()) }
/// # }
/// # impl PluginHandler for Kv {
/// #     type Options = ();
/// #     const NAME: &'static str = "kv";
/// #     fn options(_json: &str) -> Result<(), String> { Ok(()) }
/// #     fn new(_options: &Arc<()>) -> Self { Kv }
/// # }
/// sockserv_plugin::export_plugin!(name: "kv", version: env!("CARGO_PKG_VERSION"), handlers: [Kv]);
///
/// // The entry the host looks up, and the table it returns.
/// let table = unsafe { &*sockserv_plugin_entry() };
/// assert_eq!(table.magic, sockserv_plugin::abi::ABI_MAGIC);
/// ```
///
/// This generates the `sockserv_plugin_entry` symbol, the static tables and the `extern "C"` glue,
/// which catches panics at the boundary.
#[macro_export]
macro_rules! export_plugin {
    (name: $name:expr, version: $version:expr, handlers: [$($handler:ty),+ $(,)?] $(,)?) => {
        /// The plugin's entry point: returns its static table.
        #[no_mangle]
        pub extern "C" fn sockserv_plugin_entry() -> *const $crate::abi::PluginTable {
            static HANDLERS: &[$crate::abi::HandlerTable] =
                &[$($crate::abi::handler_table::<$handler>()),+];
            static TABLE: $crate::abi::PluginTable =
                $crate::abi::plugin_table($name, $version, HANDLERS);
            &TABLE
        }
    };
}
