//! The `sockserv` command: `serve`, `check` and `client`. Thin: it parses arguments, loads the config
//! with the built-in handlers registered, and hands over to the framework; errors become a message and
//! an exit code (0 ok, 1 runtime failure, 2 bad usage or config).

#![forbid(unsafe_code)]

mod client;
mod fleet;
mod loading;
mod logging;
mod notify;
mod pidfile;
mod privileges;
mod reload;
mod serve;
mod supervise;
mod upgrade;
mod watchdog;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nix::sys::signal::Signal;
use sockserv_framework::config::{self, Config, ConfigErrors};
use sockserv_framework::memory;

#[derive(Parser, Debug)]
#[command(
    name = "sockserv",
    version,
    about = "Socket servers from a TOML config, like Python's socketserver",
    after_help = "Logging goes to stderr; RUST_LOG sets how much (RUST_LOG=debug for more, \
RUST_LOG=warn for less; the default is info, which logs nothing per request: each connection's \
line, with its id and close reason, is at debug). --log-format json (or \
SOCKSERV_LOG_FORMAT=json) writes one JSON object per line.\n\n\
Exit codes: 0 ok (serve: every server drained cleanly), 1 runtime failure (an address in use, a \
server that died, a drain cut short by a second signal), 2 bad usage or config."
)]
struct Cli {
    /// How log lines are written: `text` for people, `json` for log collectors (one object per
    /// line: ts, level, target, message, and server, conn, peer, reason where a line has them).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "SOCKSERV_LOG_FORMAT",
        default_value_t
    )]
    log_format: logging::Format,
    /// What to do; without a command, `serve` the embedded default config.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve every server in FILE (default: the embedded default config) until SIGINT or SIGTERM.
    /// SIGHUP reloads FILE; SIGUSR2 upgrades to the executable now at this one's path.
    Serve {
        /// The TOML config; without it, the embedded default config.
        config: Option<PathBuf>,
        /// Write the process's pid here once every server listens (removed at exit).
        #[arg(long, value_name = "FILE")]
        pid_file: Option<PathBuf>,
    },
    /// Ask the `sockserv serve` whose pid is in FILE to reload its config (SIGHUP). Its log says
    /// how the reload went.
    Reload {
        /// The `--pid-file` of the running `sockserv serve`.
        #[arg(long, value_name = "FILE")]
        pid_file: PathBuf,
    },
    /// Ask the `sockserv serve` whose pid is in FILE to upgrade to the executable now at its path,
    /// without closing a listener (SIGUSR2). Its log says how the upgrade went.
    Upgrade {
        /// The `--pid-file` of the running `sockserv serve`.
        #[arg(long, value_name = "FILE")]
        pid_file: PathBuf,
    },
    /// Validate FILE (default: the embedded config) and print what would be served.
    Check { config: Option<PathBuf> },
    /// Load the plugins of FILE (default: the embedded config) and list them with their handlers.
    Plugins { config: Option<PathBuf> },
    /// Print the embedded default config.
    DefaultConfig,
    /// Talk to a server: send messages and print the replies.
    Client(client::ClientArgs),
    /// Internal: serve one forking server of the config on standard input, on the socket passed
    /// as systemd passes one. `sockserv serve` starts it; not for people to run.
    #[command(name = "serve-process", hide = true)]
    ServeProcess {
        #[arg(long)]
        server: String,
        #[arg(long)]
        origin: String,
        #[arg(long)]
        base_dir: PathBuf,
    },
}

/// How a command failed, which decides the exit code.
enum Failure {
    /// Bad usage or a bad config: exit 2.
    Config(ConfigErrors),
    /// Something failed while running: exit 1.
    Runtime(anyhow::Error),
    /// A server process's own exit status (see `sockserv_framework::serve_process`).
    Exit(u8),
}

impl From<anyhow::Error> for Failure {
    fn from(err: anyhow::Error) -> Self {
        Failure::Runtime(err)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    let command = cli.command.unwrap_or(Command::Serve {
        config: None,
        pid_file: None,
    });
    match run(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(errors)) => {
            eprintln!("{errors}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(err)) => {
            eprintln!("sockserv: {err:#}");
            ExitCode::from(1)
        }
        Err(Failure::Exit(code)) => ExitCode::from(code),
    }
}

fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Serve { config, pid_file } => {
            // Before any thread exists, so that freed memory can go back to the kernel once a
            // peak of connections has passed (see sockserv_framework::memory).
            memory::limit_malloc_arenas();
            let text = loading::read(config.as_deref()).map_err(Failure::Config)?;
            let source = loading::Source::new(config.as_deref());
            serve::serve(source, text, pid_file)
        }
        Command::Reload { pid_file } => Ok(pidfile::signal(&pid_file, Signal::SIGHUP)?),
        Command::Upgrade { pid_file } => Ok(pidfile::signal(&pid_file, Signal::SIGUSR2)?),
        Command::ServeProcess {
            server,
            origin,
            base_dir,
        } => match serve::run_server_process(&server, origin, base_dir)? {
            0 => Ok(()),
            code => Err(Failure::Exit(u8::try_from(code).unwrap_or(1))),
        },
        Command::Check { config } => {
            let config = load(config.as_deref())?;
            serve::describe(&config);
            println!("{}: ok, {} server(s)", config.origin, config.servers.len());
            Ok(())
        }
        Command::Plugins { config } => {
            serve::list_plugins(&load(config.as_deref())?);
            Ok(())
        }
        Command::DefaultConfig => {
            print!("{}", config::DEFAULT_CONFIG);
            Ok(())
        }
        Command::Client(args) => Ok(client::run(args)?),
    }
}

/// Read and validate `path`, or the embedded default config: what `check` does, and a reload.
fn load(path: Option<&Path>) -> Result<Config, Failure> {
    let text = loading::read(path).map_err(Failure::Config)?;
    loading::load(&text).map_err(Failure::Config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_command_means_serving_the_embedded_config() {
        // `cargo run --release` in the README relies on this.
        let cli = Cli::try_parse_from(["sockserv"]).unwrap();
        assert!(cli.command.is_none());
        let cli = Cli::try_parse_from(["sockserv", "serve", "x.toml"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Serve {
                config: Some(_),
                pid_file: None
            })
        ));
    }
}
