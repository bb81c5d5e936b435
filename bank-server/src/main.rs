//! `bank-server`: the command line of the reference server. It parses arguments and the
//! `BANK_*` environment ([`bank_server::config`]), sets up logging, and hands over to
//! [`bank_server::run`], where the process is assembled. No rule of the bank lives here.
//!
//! Standard output carries what a caller reads (the listen address, the demo credentials, the
//! JSON of `users create`); logs go to standard error. Exit codes: 0 success, 1 the command
//! failed, 2 bad arguments or configuration.

use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::process::ExitCode;

use bank_core::statements::{Initiator, Period};
use bank_core::users::Role;
use bank_server::app::App;
use bank_server::config::{self, Config, LogFormat};
use bank_server::run::{self, LoopSet, RunError};
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "bank-server",
    version,
    about = "The bank's reference server: HTTP API, background loops and admin commands",
    long_about = "The bank's reference server on the embedded (SQLite) backend: the HTTP API, the \
                  transfers pipeline's background loops (worker, outbox relay, scheduler), \
                  notifications and admin commands. Configured by BANK_* environment variables \
                  (listed below); one process per data directory.",
    after_help = config::variables_help(),
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// API and every background loop in one process (the usual way to run).
    Serve {
        /// Seed demo users (alice, bob, an operator) with funded USD accounts and print their
        /// credentials (built-in auth only; idempotent across restarts).
        #[arg(long)]
        demo: bool,
    },
    /// The HTTP API only (plus the refresh-token purge).
    Api,
    /// The transfers pipeline only: worker, outbox relay and scheduler.
    Worker,
    /// The notifications loop only.
    Notifications,
    /// Migrate the data directory and, with BANK_DATABASE_URL, the PostgreSQL schema (refusing a
    /// database that is not this bank's or is newer than this binary); with BANK_BACKEND=aws,
    /// also check every AWS resource (creating what is missing with --create-aws-resources),
    /// then exit.
    Migrate {
        /// Create the DynamoDB table, SQS queues, SNS topic and subscription and S3 buckets that
        /// are missing (first installs, emulators); BANK_BACKEND=aws only.
        #[arg(long)]
        create_aws_resources: bool,
    },
    /// Print a new token signing key and audit signing key as BANK_JWT_SIGNING_KEY=… and
    /// BANK_AUDIT_SIGNING_KEY=… lines (for BANK_AUDIT_ORIGIN), to store in a secret manager:
    /// every process of an AWS deployment is given the same two.
    Keys,
    /// Make every customer account's statement for a month that has ended (those already stored
    /// are left as they are), then exit. Prints what it did as JSON.
    Statements {
        /// The month, YYYY-MM (UTC).
        #[arg(long, value_parser = parse_period)]
        period: Period,
    },
    /// Print the current TOTP code of a secret (for trying the demo without an authenticator app).
    Totp {
        /// The base32 secret printed by `users create` or `serve --demo`.
        secret: String,
    },
    /// Manage users of the built-in issuer.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Check or export the hash-chained audit log (run while the server is stopped; a running
    /// server answers GET /v1/admin/audit/verify).
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the hash chain, every signed checkpoint and every sealed segment against the live
    /// log. Prints the verdict as JSON; exits 1 naming the first bad record if any check fails.
    Verify {
        /// Start at the checkpoint before this seq (its state authenticated by its signed root).
        #[arg(long, default_value_t = 1)]
        from: u64,
    },
    /// Write records as JSON lines (seq, fields, prev_hash, hash) on standard output, for an
    /// auditor.
    Export {
        /// First seq.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Last seq (default: the last record).
        #[arg(long)]
        to: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Create a user; the password comes from BANK_PASSWORD or standard input. Prints
    /// `{"user_id", "totp_secret"}` as JSON.
    Create {
        /// Login email.
        #[arg(long)]
        email: String,
        /// Role of the user.
        #[arg(long, value_enum)]
        role: RoleArg,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    Operator,
    Customer,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Role {
        match role {
            RoleArg::Operator => Role::Operator,
            RoleArg::Customer => Role::Customer,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("bank-server: configuration error: {err}");
            return ExitCode::from(2);
        }
    };
    init_tracing(&config);
    let log_format = config.log_format;
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("bank-server: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if log_format == LogFormat::Json {
                tracing::error!(error = %err, "command failed");
            }
            eprintln!("bank-server: {err}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(config: &Config) {
    // `Config` checked that the filter parses.
    let filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn execute(command: Command, config: Config) -> Result<(), RunError> {
    match command {
        Command::Serve { demo } => serve(&config, demo, true, LoopSet::ALL).await,
        Command::Api => serve(&config, false, false, LoopSet::API).await,
        Command::Worker => background(&config, LoopSet::PIPELINE).await,
        Command::Notifications => background(&config, LoopSet::NOTIFICATIONS).await,
        Command::Migrate { create_aws_resources } => {
            println!("{}", run::migrate(&config, create_aws_resources).await?);
            Ok(())
        }
        Command::Keys => {
            let jwt = bank_server::auth::keys::SigningKeys::generate_pkcs8_base64()?;
            let mut seed = [0_u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
            let audit = bank_core::audit::checkpoint::AuditKey::from_seed(&config.audit_origin, seed)?;
            println!("BANK_JWT_SIGNING_KEY={jwt}");
            println!("BANK_AUDIT_SIGNING_KEY={}", audit.private_key());
            Ok(())
        }
        Command::Statements { period } => statements(&config, period).await,
        Command::Totp { secret } => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|e| RunError::Refused(format!("the system clock is before 1970: {e}")))?
                .as_secs();
            let code = bank_server::auth::totp::code_at(&secret, now)
                .map_err(|_| RunError::Refused("not a valid base32 TOTP secret".into()))?;
            println!("{code}");
            Ok(())
        }
        Command::Users { command: UsersCommand::Create { email, role } } => {
            create_user(&config, &email, role.into()).await
        }
        Command::Audit { command } => audit(&config, command).await,
    }
}

async fn audit(config: &Config, command: AuditCommand) -> Result<(), RunError> {
    let files = run::audit::AuditFiles::open(config).await?;
    let result = match command {
        AuditCommand::Verify { from } => {
            let report = files.verify(from).await?;
            let json = serde_json::to_string_pretty(&report).map_err(|e| bank_core::Error::storage(e, false))?;
            print_stdout(&format!("{json}\n"));
            match (report.ok, report.first_bad_seq) {
                (true, _) => Ok(()),
                (false, seq) => Err(RunError::Refused(format!(
                    "the audit log failed verification at record {}: {}",
                    seq.map_or_else(|| "?".to_owned(), |s| s.to_string()),
                    report.problem.unwrap_or_default()
                ))),
            }
        }
        AuditCommand::Export { from, to } => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            files.export(from, to, &mut out).await.map(|_| ())
        }
    };
    files.close().await;
    result
}

/// The HTTP API, with the loops of `loops`; `with_rail`: this process runs the worker, so the API
/// reports its circuit breaker.
async fn serve(config: &Config, demo: bool, with_rail: bool, loops: LoopSet) -> Result<(), RunError> {
    if demo && !config.is_built_in_auth() {
        return Err(RunError::Refused("--demo needs BANK_AUTH_MODE=builtin".into()));
    }
    let app = App::build(config).await?;
    let listener = run::bind(config).await?;
    let address = listener.local_addr()?;
    if demo && let Some(issuer) = &app.auth.issuer {
        let users = run::seed_demo(&app.backend, issuer).await?;
        // The example talks to this process directly, whatever BANK_PUBLIC_URL says.
        print_stdout(&run::demo_banner(&users, &format!("http://{address}")));
    }
    print_stdout(&format!("bank-server listening on http://{address}\n"));
    tracing::info!(%address, data_dir = %config.data_dir.display(), "serving");

    let loops = app.start_loops(loops)?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let state = app.state(with_rail);
    let service = bank_server::http::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let served = run::serve_http(listener, service, shutdown).await;
    loops.shutdown().await;
    // Commit the queued audit records of the last reads, then checkpoint and seal everything, so
    // a graceful stop leaves no record outside a signed, sealed checkpoint.
    if let Err(error) = state.audit().flush().await {
        tracing::error!(%error, "queued audit records could not be committed at shutdown");
    }
    if seal_audit_now(&app).await.is_err() {
        tracing::error!("the audit log could not be checkpointed at shutdown");
    }
    served
}

/// A last checkpoint of the audit log, sealed.
async fn seal_audit_now(app: &App) -> Result<(), bank_core::Error> {
    let sealer = app.backend.audit_sealer();
    sealer.checkpoint_now().await?;
    sealer.seal_pending().await.map(|_| ())
}

/// Background loops only, until Ctrl-C or SIGTERM.
async fn background(config: &Config, set: LoopSet) -> Result<(), RunError> {
    let loops = App::build(config).await?.start_loops(set)?;
    print_stdout(&format!("bank-server running {}\n", loops.names().join(", ")));
    run::shutdown_signal().await;
    loops.shutdown().await;
    Ok(())
}

async fn cancel_on_signal(token: CancellationToken) {
    run::shutdown_signal().await;
    token.cancel();
}

async fn create_user(config: &Config, email: &str, role: Role) -> Result<(), RunError> {
    if !config.is_built_in_auth() {
        return Err(RunError::Refused(
            "users are managed by the external issuer (BANK_AUTH_MODE=external); nothing created".into(),
        ));
    }
    let password = match &config.password {
        Some(password) => password.expose().to_owned(),
        None => read_password()?,
    };
    run::check_password(&password)?;
    let App { backend, auth, .. } = App::build(config).await?;
    let issuer = auth.issuer.ok_or_else(|| RunError::Refused("built-in issuer unavailable".into()))?;
    let registered = issuer.create_user(email, &password, role).await?;
    // Who ran the command is the machine's business; the record says it came from the CLI, and
    // names the new user by id (never the email's password or the TOTP secret).
    let record = bank_core::audit::NewAuditRecord::new(
        backend.payments.clock.now(),
        "cli",
        format!("user.created.{}", role.as_str()),
        format!("user:{}", registered.user_id),
        bank_core::audit::AuditOutcome::Done,
    );
    backend.audit.append(record).await?;
    let json = serde_json::json!({
        "user_id": registered.user_id.to_string(),
        "totp_secret": registered.totp_secret,
    });
    print_stdout(&format!("{json}\n"));
    Ok(())
}

fn parse_period(text: &str) -> Result<Period, String> {
    text.parse().map_err(|e: bank_core::Error| e.to_string())
}

/// Runs the statements of `period` for every customer account, as the monthly schedule would.
async fn statements(config: &Config, period: Period) -> Result<(), RunError> {
    let app = App::build(config).await?;
    let job = bank_server::http::statement_job(&app.backend, config.statements.clone());
    let report = job.run_period(&Initiator::Cli, period).await?.require_some_account()?;
    let json = serde_json::json!({
        "period": report.period.to_string(),
        "created": report.created,
        "existing": report.existing,
        "skipped": report.skipped,
        "failed": report.failed_count,
    });
    print_stdout(&format!("{json}\n"));
    if report.failed_count > 0 {
        return Err(RunError::Refused(format!(
            "{} statement(s) could not be made (see the log); run the period again once fixed",
            report.failed_count
        )));
    }
    Ok(())
}

/// The first line of standard input, without its line ending.
fn read_password() -> Result<String, RunError> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password (input is echoed; prefer BANK_PASSWORD): ");
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        return Err(RunError::Refused("no password: set BANK_PASSWORD or write it on standard input".into()));
    }
    Ok(password)
}

fn print_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (e.g. `| head`) must not stop the server.
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}
