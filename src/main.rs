//! The `ldapgate` command line. The only place `anyhow` is used.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ldapgate::auth::outcome::Outcome;
use ldapgate::auth::{Attempt, Authenticator};
use ldapgate::cluster::ClusterStore;
use ldapgate::config::{Config, TenantDirectory};
use ldapgate::metrics::DirectoryMetrics;
use ldapgate::ratelimit::shared::SharedLimits;
use ldapgate::ratelimit::BindLimiter;
use ldapgate::sync::export::{self, Exporter};
use ldapgate::sync::{changes, verify};
use ldapgate::upstream::UpstreamPool;
use ldapgate::{daemon, fingerprint};
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

/// Exit code for a check that failed.
const EXIT_CHECK_FAILED: u8 = 1;
/// Exit code for a usage or configuration error.
const EXIT_USAGE: u8 = 2;

#[derive(Parser)]
#[command(
    name = "ldapgate",
    version,
    about = "LDAP proxy and delegated-authentication appliance"
)]
struct Cli {
    /// Log format on standard error: `human` (colours on a terminal) or
    /// `json` (one object per line; audit lines have target ldapgate::audit).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum SyncCommand {
    /// Every organization and account under base_dn; the last line is
    /// `{"type":"end",...}` on success, `{"type":"error",...}` otherwise.
    Full {
        #[arg(short, long)]
        config: PathBuf,
        #[command(flatten)]
        directory: DirectoryArg,
    },
    /// The changes since the pull that returned COOKIE, then an `end` line
    /// with the next cookie. A change set over the deletion limits is held
    /// back with an approval token; pass it as --approve after review.
    Changes {
        #[arg(short, long)]
        config: PathBuf,
        #[command(flatten)]
        directory: DirectoryArg,
        #[arg(long)]
        cookie: String,
        #[arg(long)]
        approve: Option<String>,
    },
    /// One verification pass now: the base-DN fingerprint, counts, objects
    /// the change tracking does not report, and sign-in ID values shared
    /// by several entries (JSON; exit 1 when any is found).
    Verify {
        #[arg(short, long)]
        config: PathBuf,
        #[command(flatten)]
        directory: DirectoryArg,
    },
    /// Forget the recorded base-DN fingerprint after checking that the base
    /// DN really is the intended entry; the next pull records it anew.
    Rearm {
        #[arg(short, long)]
        config: PathBuf,
        #[command(flatten)]
        directory: DirectoryArg,
    },
}

/// Which configured directory a command is for.
#[derive(clap::Args)]
struct DirectoryArg {
    /// The directory's `name` in [[directories]]; may be left out when the
    /// configuration has one directory.
    #[arg(long = "directory", value_name = "NAME")]
    name: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Run {
        /// Configuration file.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Validate a configuration file and print every problem with its key.
    CheckConfig {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Delegated authentication from the shell; the password is read from
    /// standard input (first line). Prints the JSON outcome; exit 0 on success.
    Authenticate {
        #[arg(short, long)]
        config: PathBuf,
        #[command(flatten)]
        directory: DirectoryArg,
        /// The sign-in ID: uid, mobile, mail, employee number, ...
        #[arg(long)]
        login: String,
    },
    /// Check every directory server before switching over: TCP, TLS, pin,
    /// certificate expiry, service bind, base DN and its fingerprint. One
    /// line per check (`--json`: the report as JSON); exit 1 on any failure.
    /// Every configured directory, or the one given with --directory.
    Verify {
        #[arg(short, long)]
        config: PathBuf,
        #[arg(long = "directory", value_name = "NAME")]
        directory: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Sync pulls to standard output as NDJSON.
    Sync {
        #[command(subcommand)]
        action: SyncCommand,
    },
    /// Print a server's certificate fingerprints in the forms `pins` accepts.
    Fingerprint {
        /// HOST:PORT (TLS from the first byte unless --starttls), or an
        /// ldap:// (StartTLS) / ldaps:// URL.
        target: String,
        /// Speak plain LDAP first and upgrade with StartTLS.
        #[arg(long)]
        starttls: bool,
        /// How long to wait for connect, StartTLS and handshake.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
}

fn main() -> ExitCode {
    keep_large_buffers_returnable();
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Human => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ldapgate: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    runtime.block_on(dispatch(cli.command))
}

/// Loads the configuration for a command that needs it; an invalid one is
/// reported problem by problem and ends the command with a usage error.
fn load_config(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        for problem in e.problems() {
            eprintln!("ldapgate: config: {problem}");
        }
        ExitCode::from(EXIT_USAGE)
    })
}

async fn dispatch(command: Command) -> ExitCode {
    match command {
        Command::CheckConfig { config } => match Config::load(&config) {
            Ok(_) => {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                for problem in e.problems() {
                    println!("{problem}");
                }
                ExitCode::from(EXIT_CHECK_FAILED)
            }
        },
        Command::Run { config: path } => {
            let config = match load_config(&path) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match run(&path, config).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    // Each of run's errors says its cause in its own text;
                    // the chain would say it again.
                    eprintln!("ldapgate: {e}");
                    ExitCode::from(EXIT_USAGE)
                }
            }
        }
        Command::Authenticate {
            config,
            directory,
            login,
        } => {
            let config = match load_config(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let directory = match choose(&config, directory.name.as_deref()) {
                Ok(d) => d,
                Err(code) => return code,
            };
            let mut password = String::new();
            if let Err(e) = std::io::stdin().read_line(&mut password) {
                eprintln!("ldapgate: reading the password from stdin: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
            let password = password.strip_suffix('\n').unwrap_or(&password);
            let password = password.strip_suffix('\r').unwrap_or(password);
            let cluster = match cluster_store(&config).await {
                Ok(store) => store,
                Err(code) => return code,
            };
            match authenticate(directory, cluster, &login, password).await {
                Ok((json, ok)) => {
                    println!("{json}");
                    if ok {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(EXIT_CHECK_FAILED)
                    }
                }
                Err(e) => {
                    eprintln!("ldapgate: {e:#}");
                    ExitCode::from(EXIT_USAGE)
                }
            }
        }
        Command::Sync { action } => {
            let (config, directory) = match &action {
                SyncCommand::Full { config, directory }
                | SyncCommand::Rearm { config, directory }
                | SyncCommand::Verify { config, directory }
                | SyncCommand::Changes {
                    config, directory, ..
                } => (config, directory),
            };
            let config = match load_config(config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let directory = match choose(&config, directory.name.as_deref()) {
                Ok(d) => d,
                Err(code) => return code,
            };
            let cluster = match cluster_store(&config).await {
                Ok(store) => store,
                Err(code) => return code,
            };
            match sync(directory, cluster, &action).await {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(EXIT_CHECK_FAILED),
                Err(e) => {
                    eprintln!("ldapgate: {e:#}");
                    ExitCode::from(EXIT_USAGE)
                }
            }
        }
        Command::Verify {
            config,
            directory,
            json,
        } => {
            let config = match load_config(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let result = match directory {
                None => ldapgate::verify::verify(&config).await,
                Some(name) => match choose(&config, Some(&name)) {
                    Ok(d) => {
                        let cluster = match cluster_store(&config).await {
                            Ok(store) => store,
                            Err(code) => return code,
                        };
                        ldapgate::verify::verify_with_store(d, cluster).await
                    }
                    Err(code) => return code,
                },
            };
            match result {
                Ok(report) => {
                    if json {
                        println!("{}", serde_json::to_string(&report).unwrap_or_default());
                    } else {
                        print_checks(&report.checks, config.directories.len() > 1);
                    }
                    if report.ok {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(EXIT_CHECK_FAILED)
                    }
                }
                Err(e) => {
                    eprintln!("ldapgate: {e}");
                    ExitCode::from(EXIT_USAGE)
                }
            }
        }
        Command::Fingerprint {
            target,
            starttls,
            timeout,
        } => {
            let (endpoint, starttls) = match fingerprint::parse_target(&target, starttls) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("ldapgate: {e}");
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            match fingerprint::fetch(endpoint, starttls, timeout).await {
                // The certificate was read, but ldapgate cannot use the
                // server as it is: the pins are shown, the exit says so.
                Ok(certs) if certs.unusable.is_some() => {
                    print!("{}", certs.report());
                    ExitCode::from(EXIT_CHECK_FAILED)
                }
                Ok(certs) => {
                    print!("{}", certs.report());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("ldapgate: {e}");
                    ExitCode::from(EXIT_CHECK_FAILED)
                }
            }
        }
    }
}

/// The directory `name` names, or the only one; otherwise a usage error
/// naming the choices.
fn choose<'a>(config: &'a Config, name: Option<&str>) -> Result<&'a TenantDirectory, ExitCode> {
    config.choose_directory(name).map_err(|e| {
        eprintln!("ldapgate: {e}");
        ExitCode::from(EXIT_USAGE)
    })
}

/// One line per check; with several directories, each directory's checks
/// under a line naming it.
fn print_checks(checks: &[ldapgate::verify::Check], several: bool) {
    let mut last: Option<&str> = None;
    for check in checks {
        if several && last != Some(check.directory.as_str()) {
            println!("directory {}", check.directory);
            last = Some(&check.directory);
        }
        println!("{check}");
    }
}

/// The shared store of `[cluster]`, asked once whether it answers (a
/// command then counts and reads in it like the daemon does).
async fn cluster_store(config: &Config) -> Result<Option<Arc<ClusterStore>>, ExitCode> {
    let Some(c) = &config.cluster else {
        return Ok(None);
    };
    match ClusterStore::new(c) {
        Ok(store) => {
            store.probe().await;
            Ok(Some(store))
        }
        Err(e) => {
            eprintln!("ldapgate: {e}");
            Err(ExitCode::from(EXIT_USAGE))
        }
    }
}

async fn authenticate(
    config: &TenantDirectory,
    cluster: Option<Arc<ClusterStore>>,
    login: &str,
    password: &str,
) -> anyhow::Result<(String, bool)> {
    let pool = UpstreamPool::new(&config.directory, DirectoryMetrics::new(&config.name))?;
    let shared = cluster.map(|store| {
        SharedLimits::new(
            store,
            &config.name,
            &config.ratelimit,
            config.directory.operation_timeout,
        )
    });
    let limiter = BindLimiter::with_shared(&config.ratelimit, shared);
    let authenticator = Authenticator::new(config, pool, limiter);
    let verdict = authenticator
        .authenticate(&Attempt {
            login,
            password,
            client: std::net::IpAddr::from([127, 0, 0, 1]),
            channel: "cli",
        })
        .await;
    let ok = verdict.outcome == Outcome::Success;
    Ok((serde_json::to_string(&verdict)?, ok))
}

/// A sync pull (or a rearm) from the shell; Ok(false) when it failed.
async fn sync(
    config: &TenantDirectory,
    cluster: Option<Arc<ClusterStore>>,
    action: &SyncCommand,
) -> anyhow::Result<bool> {
    use std::io::Write;
    let pool = UpstreamPool::new(&config.directory, DirectoryMetrics::new(&config.name))?;
    let exporter = Arc::new(Exporter::new(config, pool, cluster));
    if let SyncCommand::Verify { .. } = action {
        return Ok(
            match verify::verify(&exporter, &config.signin.attributes).await {
                Ok(report) => {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                    report.shared_sign_in_values.is_empty() && report.untracked_objects == 0
                }
                Err(e) => {
                    println!("{}", export::error_line(&e));
                    false
                }
            },
        );
    }
    if let SyncCommand::Changes {
        cookie, approve, ..
    } = action
    {
        let (text, ok) = match changes::changes(&exporter, cookie, approve.as_deref()).await {
            Ok(set) => {
                let mut text = set.lines.join("\n");
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(&set.end_line());
                (text, true)
            }
            Err(e) => (export::error_line(&e), false),
        };
        println!("{text}");
        return Ok(ok);
    }
    if let SyncCommand::Rearm { .. } = action {
        let removed = match exporter.rearm().await {
            Ok(removed) => removed,
            Err(e) => {
                println!("{}", export::error_line(&e));
                return Ok(false);
            }
        };
        println!(
            "{}",
            if removed {
                "base DN fingerprint forgotten; the next pull records the current entry"
            } else {
                "no base DN fingerprint was recorded"
            }
        );
        return Ok(true);
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel(256);
    let task = tokio::spawn({
        let exporter = exporter.clone();
        async move { exporter.full(&tx).await }
    });
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    while let Some(line) = rx.recv().await {
        writeln!(out, "{line}")?;
    }
    let result = task.await?;
    let ok = result.is_ok();
    let last = match result {
        Ok((counts, cookie)) => export::end_line(counts, &cookie),
        Err(e) => export::error_line(&e),
    };
    writeln!(out, "{last}")?;
    out.flush()?;
    Ok(ok)
}

async fn run(path: &std::path::Path, config: Config) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let running = daemon::start(&config).await?;
    info!(
        ldap = ?running.ldap_addrs,
        ldaps = ?running.ldaps_addrs,
        control = ?running.control_addr,
        metrics = ?running.metrics_addr,
        "ldapgate ready"
    );
    // Listeners are bound and the first upstream check has run. Outside
    // systemd (no NOTIFY_SOCKET) this does nothing.
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        warn!(error = %e, "could not notify systemd of readiness");
    }
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = hup.recv() => {
                // A reload waits for directories that may not answer; a
                // stop does not wait for it. Nothing of a reload is in force
                // before its last step, which does not wait, so dropping it
                // leaves the configuration as it was.
                tokio::select! {
                    _ = reload(path, &running) => {}
                    _ = term.recv() => {
                        warn!("SIGTERM during a reload: the reload is abandoned");
                        break;
                    }
                    _ = tokio::signal::ctrl_c() => break,
                }
            }
        }
    }
    info!("shutting down: no new connections; open sessions may finish");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    running.shutdown().await;
    info!("stopped");
    Ok(())
}

/// SIGHUP: reads the configuration file again and applies it to new
/// sessions; an invalid file changes nothing.
async fn reload(path: &std::path::Path, running: &daemon::Running) {
    info!(config = %path.display(), "SIGHUP: reloading the configuration");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
    let result = match Config::load(path) {
        Ok(config) => running
            .reload(config)
            .await
            .map_err(|e| vec![e.to_string()]),
        Err(e) => Err(e.problems()),
    };
    match result {
        Ok(warnings) => {
            for w in &warnings {
                warn!(reason = %w, "reload: not applied until restart");
            }
            ldapgate::metrics::metrics().config_loaded(true);
            info!("configuration reloaded: new sessions use it; open sessions keep theirs");
        }
        Err(problems) => {
            for p in &problems {
                error!(problem = %p, "reload rejected");
            }
            ldapgate::metrics::metrics().config_loaded(false);
            error!(
                problems = problems.len(),
                "configuration not reloaded: the previous configuration keeps serving"
            );
        }
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
}

/// Makes memory freed after a flood go back to the system (measured in
/// tests/bounds.rs: two floods of 300 unfinished 1 MiB PDUs kept 68 MiB
/// with glibc's defaults, 12 MiB with the fixed threshold alone, 2 MiB with
/// both measures). glibc serves blocks over its mmap threshold from
/// mappings of their own, unmapped when freed, but raises the threshold
/// each time such a block is freed, so that the next flood's buffers come
/// from the heap: a fixed threshold keeps every buffer over 64 KiB
/// returnable. Freed heap pages between live blocks (the many small
/// buffers of sessions that ended) are returned by `malloc_trim` every
/// [`TRIM_INTERVAL`], on a thread of its own.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_large_buffers_returnable() {
    const THRESHOLD: libc::c_int = 64 * 1024;
    const TRIM_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
    // SAFETY: mallopt only sets allocator parameters, and runs here before
    // any other thread exists; a refusal (return 0) leaves glibc's default.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD);
    }
    let trim = std::thread::Builder::new()
        .name("malloc-trim".into())
        .spawn(|| loop {
            std::thread::sleep(TRIM_INTERVAL);
            // SAFETY: malloc_trim is thread-safe (it takes each arena's
            // lock) and only releases free pages.
            unsafe {
                libc::malloc_trim(0);
            }
        });
    if let Err(e) = trim {
        eprintln!("freed memory is not trimmed: cannot start its thread: {e}");
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_large_buffers_returnable() {}
