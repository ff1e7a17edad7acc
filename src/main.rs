#![forbid(unsafe_code)]
//! The `atlantis-lock-proxy` binary: parse the CLI, load config, run until a signal.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
            ExitCode::SUCCESS
        }
        Command::Serve => serve(config),
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
