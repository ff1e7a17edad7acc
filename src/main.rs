#![forbid(unsafe_code)]
//! The `atlantis-lock-proxy` binary: parse the CLI, load config, run until a signal.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use atlantis_lock_proxy::admin::client::{AdminClient, CliCommand};
use atlantis_lock_proxy::app::App;
use atlantis_lock_proxy::config::{CliOverrides, Config};
use atlantis_lock_proxy::telemetry;
use clap::{Parser, Subcommand};

/// A reverse proxy in front of Atlantis that queues contended Terraform locks by priority.
#[derive(Parser, Debug)]
#[command(name = "atlantis-lock-proxy", version, about)]
struct Cli {
    /// YAML config file (see config/atlantis-lock-proxy.example.yaml).
    #[arg(long, short = 'c', global = true, env = "ALP_CONFIG")]
    config: Option<PathBuf>,
    /// Main listener address, e.g. 0.0.0.0:4141.
    #[arg(long, global = true)]
    listen: Option<String>,
    /// Atlantis base URL, e.g. http://localhost:4142.
    #[arg(long, global = true)]
    upstream: Option<String>,
    /// Admin listener address, e.g. 127.0.0.1:9464.
    #[arg(long, global = true)]
    admin_listen: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the proxy (the default).
    Serve,
    /// Load and validate the configuration, print a summary, and exit.
    CheckConfig,
    /// Split, shadow, breaker, backend health, lock and queue counts.
    Status(AdminArgs),
    /// Change the traffic split.
    Split {
        #[command(subcommand)]
        action: SplitAction,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Shadow mode (monitor-only): `on` or `off`.
    Shadow {
        /// on | off
        #[arg(value_parser = ["on", "off"])]
        state: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Emergency rollback: split 0 and shadow off, effective on the next request.
    Rollback(AdminArgs),
    /// Engine locks.
    Locks {
        #[command(subcommand)]
        action: LocksAction,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Queued requests.
    Queue {
        #[command(subcommand)]
        action: QueueAction,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Shadow-mode decision differences.
    Diffs(AdminArgs),
}

#[derive(Subcommand, Debug)]
enum SplitAction {
    /// Percentage of repositories on the enhanced path (0-100).
    Set {
        #[arg(value_parser = clap::value_parser!(u8).range(0..=100))]
        percent: u8,
    },
}

#[derive(Subcommand, Debug)]
enum LocksAction {
    /// List locks held in the engine.
    List,
    /// Force-release a lock (also deletes Atlantis's lock).
    Release {
        /// The Atlantis lock key, e.g. owner/repo/./default/
        key: String,
    },
}

#[derive(Subcommand, Debug)]
enum QueueAction {
    /// List queued requests in grant order.
    List,
    /// Remove a waiter; its request is handed to Atlantis like a timeout.
    Remove {
        /// Waiter id (see `queue list`).
        id: String,
    },
}

/// Where the admin API is.
#[derive(clap::Args, Debug)]
struct AdminArgs {
    /// Admin API base URL (default: from the config's admin.listen, else http://127.0.0.1:9464).
    #[arg(long, env = "ALP_ADMIN_URL")]
    admin_url: Option<String>,
    /// Bearer token for /admin/*.
    #[arg(long, env = "ALP_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some((cmd, admin)) = operator_command(&cli) {
        return run_operator(&cli, cmd, admin);
    }
    let env: HashMap<String, String> = std::env::vars().collect();
    let overrides = CliOverrides {
        listen: cli.listen.clone(),
        upstream: cli.upstream.clone(),
        admin_listen: cli.admin_listen.clone(),
    };
    let config = match Config::load(cli.config.as_deref(), &env, &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("atlantis-lock-proxy: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => {
            println!(
                "configuration OK: listen {} → upstream {}, admin {}, engine backend {:?}, traffic-split {}%",
                config.listen,
                config.upstream.url,
                config.admin.listen,
                config.enhanced.backend,
                config.enhanced.traffic_split
            );
            println!("\nAtlantis settings (value, [where it came from]):");
            for line in config.atlantis_settings_report() {
                println!("  {line}");
            }
            println!("\nWith this configuration:");
            for c in config.capabilities() {
                let mark = match c.level {
                    atlantis_lock_proxy::config::Level::Ok => "ok  ",
                    atlantis_lock_proxy::config::Level::Warn => "WARN",
                };
                println!("  {mark} {}", c.text);
            }
            ExitCode::SUCCESS
        }
        Command::Serve => serve(config),
        _ => unreachable!("operator commands return early"),
    }
}

/// Maps an operator subcommand to its admin API call.
fn operator_command(cli: &Cli) -> Option<(CliCommand, &AdminArgs)> {
    Some(match cli.command.as_ref()? {
        Command::Status(a) => (CliCommand::Status, a),
        Command::Split {
            action: SplitAction::Set { percent },
            admin,
        } => (CliCommand::SplitSet(*percent), admin),
        Command::Shadow { state, admin } => (CliCommand::Shadow(state == "on"), admin),
        Command::Rollback(a) => (CliCommand::Rollback, a),
        Command::Locks {
            action: LocksAction::List,
            admin,
        } => (CliCommand::LocksList, admin),
        Command::Locks {
            action: LocksAction::Release { key },
            admin,
        } => (CliCommand::LocksRelease(key.clone()), admin),
        Command::Queue {
            action: QueueAction::List,
            admin,
        } => (CliCommand::QueueList, admin),
        Command::Queue {
            action: QueueAction::Remove { id },
            admin,
        } => (CliCommand::QueueRemove(id.clone()), admin),
        Command::Diffs(a) => (CliCommand::Diffs, a),
        Command::Serve | Command::CheckConfig => return None,
    })
}

fn run_operator(cli: &Cli, cmd: CliCommand, admin: &AdminArgs) -> ExitCode {
    let url = admin.admin_url.clone().unwrap_or_else(|| {
        let env: HashMap<String, String> = std::env::vars().collect();
        let listen = Config::load(cli.config.as_deref(), &env, &CliOverrides::default())
            .map(|c| c.admin.listen)
            .ok();
        match listen {
            Some(a) if a.ip().is_unspecified() => format!("http://127.0.0.1:{}", a.port()),
            Some(a) => format!("http://{a}"),
            None => "http://127.0.0.1:9464".into(),
        }
    });
    let client = AdminClient::new(&url, admin.token.clone());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("atlantis-lock-proxy: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(client.run(&cmd, admin.json)) {
        Ok(out) => {
            print!("{out}");
            if !out.ends_with('\n') {
                println!();
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("atlantis-lock-proxy: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Config) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("atlantis-lock-proxy: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Telemetry starts inside the runtime (its exporters run there) and is flushed after the
    // server stopped but while the runtime still runs, so the last spans reach the collector.
    let telemetry = runtime.block_on(async { telemetry::init(&config.telemetry) });
    let code = runtime.block_on(async {
        let app = match App::build(config).await {
            Ok(app) => app,
            Err(e) => {
                tracing::error!("{e}");
                eprintln!("atlantis-lock-proxy: {e}");
                return ExitCode::FAILURE;
            }
        };
        app.run(shutdown_signal()).await;
        ExitCode::SUCCESS
    });
    telemetry.shutdown();
    code
}

/// Completes on SIGTERM (Kubernetes, docker stop) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
