//! `bank-load`: the command line of the load generator. It parses and checks the options, starts
//! a server when asked (`--server`), prepares the users, runs the plan or the `--max` search, and
//! prints the table (or JSON). Exit codes: 0 every request answered and every accepted transfer
//! settled; 1 errors, failed or unsettled transfers, or setup failed; 2 bad options or an
//! unreachable target; 130 interrupted (Ctrl-C / SIGTERM). A server it started is stopped on
//! every one of these paths.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bank_client::{BankClient, RetryPolicy};
use bank_load::maxrate::{self, MaxSearch};
use bank_load::options::{OptionError, at_least_a_second, check_rates, parse_duration};
use bank_load::report;
use bank_load::run::{self, Plan};
use bank_load::server::{Server, ServerOptions};
use bank_load::setup::{self, ClientOptions, Operator};
use clap::Parser;
use rust_decimal::Decimal;
use tokio_util::sync::CancellationToken;

const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_INTERRUPTED: u8 = 130;

#[derive(Debug, Parser)]
#[command(
    name = "bank-load",
    version,
    about = "Open-loop load generator of the bank HTTP API",
    long_about = "Sends account views, history pages and transfers at constant arrival rates (open \
                  loop: latency is measured from each request's intended send time), follows every \
                  accepted transfer until it is settled, and prints p50/p90/p99/p99.9/max, \
                  throughput and errors by status per route. Either against a running server \
                  (--target with an operator's credentials) or against one it starts and stops \
                  itself (--server PATH, `serve --demo` in a throw-away data directory)."
)]
struct Cli {
    /// Base URL of a running server (needs --operator-email, --operator-password and
    /// --operator-totp-secret, and the server's rate limits raised above the load).
    #[arg(long, conflicts_with = "server")]
    target: Option<String>,
    /// Start this bank-server binary (`serve --demo` on a free loopback port, rate limits raised)
    /// and stop it at exit; the demo operator funds the load's users.
    #[arg(long)]
    server: Option<PathBuf>,
    /// Data directory of the started server (default: a temporary one, removed at exit).
    #[arg(long, requires = "server")]
    data_dir: Option<PathBuf>,
    #[arg(long, env = "BANK_LOAD_OPERATOR_EMAIL")]
    operator_email: Option<String>,
    #[arg(long, env = "BANK_LOAD_OPERATOR_PASSWORD", hide_env_values = true)]
    operator_password: Option<String>,
    #[arg(long, env = "BANK_LOAD_OPERATOR_TOTP_SECRET", hide_env_values = true)]
    operator_totp_secret: Option<String>,
    /// Reads per second (account views and history pages, split by --history-percent).
    #[arg(long, default_value_t = 1000)]
    reads: u32,
    /// Transfers per second.
    #[arg(long, default_value_t = 100)]
    writes: u32,
    /// Share of the reads that are history pages, in percent.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=100))]
    history_percent: u32,
    /// How long to send (e.g. 60s, 2m); at least 1s.
    #[arg(long, default_value = "60s", value_parser = duration)]
    duration: Duration,
    /// Users (each with one account) the load is spread over.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    users: u32,
    /// Currency of the load's accounts.
    #[arg(long, default_value = "USD")]
    currency: String,
    /// Operator deposit into each user's account (below the server's four-eyes threshold).
    #[arg(long, default_value = "1000.00")]
    deposit: Decimal,
    /// Amount of each transfer.
    #[arg(long, default_value = "0.01")]
    amount: Decimal,
    /// Time an accepted transfer may take to become final.
    #[arg(long, default_value = "30s", value_parser = duration)]
    settle_timeout: Duration,
    /// Do not follow accepted transfers (no accept → settled figures, no polling load).
    #[arg(long)]
    no_settle: bool,
    /// Time limit of one request.
    #[arg(long, default_value = "10s", value_parser = duration)]
    timeout: Duration,
    /// Most requests in flight; past it requests are not sent and count as `saturated`.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..))]
    in_flight_max: u32,
    /// Most requests on the wire at once (so connections to the server); a request due while
    /// all are busy waits for one, and its latency counts the wait.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    connections: u32,
    /// Print the result as JSON on standard output (the table then goes to standard error).
    #[arg(long)]
    json: bool,
    /// No progress line each second.
    #[arg(long)]
    quiet: bool,
    /// Find the highest rate each route (account, history, transfer) sustains with p99 under
    /// --p99-bound, instead of one run.
    #[arg(long)]
    max: bool,
    /// p99 bound of --max.
    #[arg(long, default_value = "5ms", value_parser = parse_duration_any)]
    p99_bound: Duration,
    /// First rate of --max.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    max_start: u32,
    /// Highest rate --max tries.
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u32).range(1..))]
    max_limit: u32,
    /// Cut the run into periods of this length, each with its own latencies and a sample of the
    /// server's resident memory and open files (a soak: `--duration 10m --period 60s`).
    #[arg(long, default_value = "60s", value_parser = duration)]
    period: Duration,
    /// The server process to sample each period (default: the one started by --server).
    #[arg(long)]
    watch_pid: Option<u32>,
    /// Length of each --max step.
    #[arg(long, default_value = "5s", value_parser = duration)]
    max_step: Duration,
}

/// A duration of at least a second.
fn duration(text: &str) -> Result<Duration, OptionError> {
    at_least_a_second("a duration", parse_duration(text)?)
}

fn parse_duration_any(text: &str) -> Result<Duration, OptionError> {
    let d = parse_duration(text)?;
    if d.is_zero() {
        return Err(OptionError("the bound must be above zero".into()));
    }
    Ok(d)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = check(&cli) {
        eprintln!("bank-load: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    // One thread runs every request: the generator shares the machine with the server it
    // measures, and a multi-threaded runtime's hand-offs between its threads (a futex wake of a
    // parked worker per request) cost more than the requests themselves. Measured at 10,000
    // account views a second: 46 µs of CPU a request on one thread, 63 µs on two.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("bank-load: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    ExitCode::from(runtime.block_on(execute(cli)))
}

fn check(cli: &Cli) -> Result<(), OptionError> {
    if !cli.max {
        check_rates(cli.reads, cli.writes)?;
    }
    match (&cli.target, &cli.server) {
        (None, None) => return Err(OptionError("give --target URL (a running server) or --server PATH".into())),
        (Some(_), _)
            if cli.operator_email.is_none()
                || cli.operator_password.is_none()
                || cli.operator_totp_secret.is_none() =>
        {
            return Err(OptionError(
                "--target needs --operator-email, --operator-password and --operator-totp-secret (to fund the load's users)".into(),
            ));
        }
        _ => {}
    }
    if cli.deposit <= Decimal::ZERO || cli.amount <= Decimal::ZERO {
        return Err(OptionError("--deposit and --amount must be above zero".into()));
    }
    Ok(())
}

/// Cancelled on Ctrl-C or SIGTERM.
fn cancel_on_signals() -> CancellationToken {
    let cancel = CancellationToken::new();
    let token = cancel.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let terminated = async {
            match term.as_mut() {
                Some(term) => {
                    term.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = terminated => {}
        }
        eprintln!("bank-load: interrupted; stopping");
        token.cancel();
    });
    cancel
}

async fn execute(cli: Cli) -> u8 {
    let cancel = cancel_on_signals();
    // Owned here so that every return below drops (and so kills) a server this process started.
    let mut work_dir = None;
    let mut server = None;
    let (base_url, operator) = match (&cli.target, &cli.server) {
        (_, Some(binary)) => {
            let dir = match tempfile::Builder::new().prefix("bank-load-").tempdir() {
                Ok(dir) => dir,
                Err(e) => {
                    eprintln!("bank-load: cannot make a temporary directory: {e}");
                    return EXIT_FAILED;
                }
            };
            let options = ServerOptions {
                binary: binary.clone(),
                data_dir: cli.data_dir.clone().unwrap_or_else(|| dir.path().join("data")),
                listen: None,
                log: dir.path().join("server.log"),
                env: Vec::new(),
            };
            let started = tokio::select! {
                started = Server::start(&options) => started,
                () = cancel.cancelled() => return EXIT_INTERRUPTED,
            };
            let started = match started {
                Ok(started) => started,
                Err(e) => {
                    eprintln!("bank-load: {e}");
                    // Keep the log to read.
                    let _ = dir.keep();
                    return EXIT_FAILED;
                }
            };
            eprintln!(
                "bank-load: started {} (pid {:?}, log {})",
                started.base_url,
                started.pid(),
                started.log().display()
            );
            let target = (started.base_url.clone(), started.operator.clone());
            server = Some(started);
            work_dir = Some(dir);
            target
        }
        (Some(target), None) => (
            target.clone(),
            Operator {
                email: cli.operator_email.clone().unwrap_or_default(),
                password: cli.operator_password.clone().unwrap_or_default(),
                totp_secret: cli.operator_totp_secret.clone().unwrap_or_default(),
            },
        ),
        (None, None) => return EXIT_USAGE,
    };
    let watch_pid = cli.watch_pid.or_else(|| server.as_ref().and_then(Server::pid));
    let code = drive(&cli, &base_url, &operator, watch_pid, &cancel).await;
    if let Some(server) = server
        && let Err(e) = server.stop().await
    {
        eprintln!("bank-load: stopping the server: {e}");
    }
    drop(work_dir);
    code
}

async fn drive(
    cli: &Cli,
    base_url: &str,
    operator: &Operator,
    watch_pid: Option<u32>,
    cancel: &CancellationToken,
) -> u8 {
    // An unreachable target is a usage error, told before any setup.
    let probe = BankClient::builder(base_url)
        .timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(3))
        .retry_policy(RetryPolicy::none())
        .build();
    match probe {
        Ok(probe) => {
            if let Err(e) = probe.health_live().await {
                eprintln!("bank-load: cannot reach {base_url}: {e}");
                return EXIT_USAGE;
            }
        }
        Err(e) => {
            eprintln!("bank-load: --target {base_url}: {e}");
            return EXIT_USAGE;
        }
    }
    let options = ClientOptions { timeout: cli.timeout, retry: RetryPolicy::none() };
    let users = usize::try_from(cli.users).unwrap_or(1);
    eprintln!("bank-load: preparing {users} users on {base_url}");
    let fixture = tokio::select! {
        prepared = setup::prepare(base_url, operator, users, &cli.currency, cli.deposit, options) => prepared,
        () = cancel.cancelled() => return EXIT_INTERRUPTED,
    };
    let fixture = match fixture {
        Ok(fixture) => fixture,
        Err(e) => {
            eprintln!("bank-load: setup failed: {e}");
            return EXIT_FAILED;
        }
    };
    let history_rate = u32::try_from(u64::from(cli.reads) * u64::from(cli.history_percent) / 100).unwrap_or(0);
    let plan = Plan {
        account_rate: cli.reads - history_rate,
        history_rate,
        transfer_rate: cli.writes,
        duration: cli.duration,
        amount: cli.amount,
        follow_settlement: !cli.no_settle,
        settle_timeout: cli.settle_timeout,
        in_flight_max: usize::try_from(cli.in_flight_max).unwrap_or(usize::MAX),
        connections: usize::try_from(cli.connections).unwrap_or(usize::MAX),
        progress: !cli.quiet,
        journal: false,
        period: cli.period,
        watch_pid,
    };
    if cli.max {
        let search = MaxSearch {
            start_rate: cli.max_start,
            limit_rate: cli.max_limit,
            step: cli.max_step,
            p99_bound: cli.p99_bound,
        };
        let results = maxrate::search(&fixture, &plan, &search, cancel).await;
        emit(cli.json, &report::max_table(&results), &results);
        return if cancel.is_cancelled() { EXIT_INTERRUPTED } else { 0 };
    }
    eprintln!(
        "bank-load: {} account views/s, {} history pages/s, {} transfers/s for {} s",
        plan.account_rate,
        plan.history_rate,
        plan.transfer_rate,
        plan.duration.as_secs()
    );
    let outcome = run::run(&fixture, &plan, cancel).await;
    emit(cli.json, &report::table(&outcome), &outcome);
    if outcome.interrupted {
        EXIT_INTERRUPTED
    } else if outcome.errors() > 0 || outcome.unsettled > 0 || outcome.failed_transfers > 0 {
        EXIT_FAILED
    } else {
        0
    }
}

/// The table on standard output, or the JSON there and the table on standard error.
fn emit(json: bool, table: &str, value: &impl serde::Serialize) {
    if json {
        eprint!("{table}");
        match serde_json::to_string_pretty(value) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("bank-load: cannot encode the JSON: {e}"),
        }
    } else {
        print!("{table}");
    }
}
