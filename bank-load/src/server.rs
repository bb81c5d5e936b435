//! A `bank-server serve --demo` that the harness starts and owns: on a loopback port, with its own
//! data directory, rate limits raised out of the way of the load, and the demo operator's
//! credentials read from its standard output. The process is killed when the handle is dropped
//! (every exit path of the harness, panics and Ctrl-C included); [`Server::stop`] stops it
//! gracefully first, [`Server::kill9`] kills it as a crash would.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::setup::Operator;

/// How long a started server may take to print its listen address.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long [`Server::stop`] waits after SIGTERM before it kills.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot start {binary}: {source}")]
    Spawn { binary: String, source: std::io::Error },
    #[error("the server exited or timed out before listening (its log: {log})")]
    NotListening { log: String },
    #[error("the server printed no demo operator (its log: {log})")]
    NoOperator { log: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// How to start a server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The `bank-server` binary.
    pub binary: PathBuf,
    /// Its data directory (created when missing; reused across restarts).
    pub data_dir: PathBuf,
    /// Its address; `None`: any free loopback port (a restart then gets another one).
    pub listen: Option<SocketAddr>,
    /// Where its standard error goes (appended).
    pub log: PathBuf,
    /// More `BANK_*` variables (after the harness's own, so they win).
    pub env: Vec<(String, String)>,
}

/// A running server started by the harness.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// Its listen address.
    pub address: SocketAddr,
    /// The demo operator it seeded.
    pub operator: Operator,
    log: PathBuf,
}

impl Server {
    /// Starts `binary serve --demo` and waits until it listens.
    pub async fn start(options: &ServerOptions) -> Result<Self, ServerError> {
        std::fs::create_dir_all(&options.data_dir)?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&options.log)?;
        let listen = options.listen.map_or_else(|| "127.0.0.1:0".to_owned(), |a| a.to_string());
        let mut command = Command::new(&options.binary);
        command
            .args(["serve", "--demo"])
            .env("BANK_DATA_DIR", &options.data_dir)
            .env("BANK_LISTEN", &listen)
            .env("BANK_LOG", "warn")
            .env("BANK_RATE_PER_IP", "100000")
            .env("BANK_RATE_PER_SUBJECT", "100000")
            .env("BANK_LOGIN_RATE_PER_IP", "100000")
            .env("BANK_LOGIN_FAILURES_PER_IP", "100000")
            .envs(options.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|source| ServerError::Spawn { binary: options.binary.display().to_string(), source })?;
        let log_name = options.log.display().to_string();
        let stdout = child.stdout.take().ok_or_else(|| ServerError::NotListening { log: log_name.clone() })?;
        let mut lines = BufReader::new(stdout).lines();
        let mut operator_secret = None;
        let read = async {
            while let Some(line) = lines.next_line().await? {
                if let Some(secret) = demo_operator_secret(&line) {
                    operator_secret = Some(secret);
                }
                if let Some(address) = line.strip_prefix("bank-server listening on http://") {
                    return Ok::<_, std::io::Error>(address.trim().parse::<SocketAddr>().ok());
                }
            }
            Ok(None)
        };
        let address = match tokio::time::timeout(START_TIMEOUT, read).await {
            Ok(Ok(Some(address))) => address,
            _ => return Err(ServerError::NotListening { log: log_name }),
        };
        // Keep draining its standard output, so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let secret = operator_secret.ok_or(ServerError::NoOperator { log: log_name })?;
        Ok(Self {
            child,
            base_url: format!("http://{address}"),
            address,
            operator: Operator {
                email: "operator@demo.bank".to_owned(),
                password: "operator-demo-password".to_owned(),
                totp_secret: secret,
            },
            log: options.log.clone(),
        })
    }

    /// The file its standard error goes to.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Kills it with SIGKILL, as a crash would (no shutdown of any kind), and reaps it.
    pub async fn kill9(mut self) -> std::io::Result<()> {
        self.child.kill().await
    }

    /// Stops it with SIGTERM (a graceful shutdown), and SIGKILL after [`STOP_TIMEOUT`].
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(pid) = self.child.id() {
            // No signal API without `unsafe` in std: the `kill` utility sends SIGTERM.
            let sent = Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
            if sent.is_ok_and(|s| s.success()) && tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await.is_ok() {
                return Ok(());
            }
        }
        self.child.kill().await
    }
}

/// The operator's TOTP secret from a line of the demo banner.
fn demo_operator_secret(line: &str) -> Option<String> {
    let rest = line.trim_start().strip_prefix("operator@demo.bank")?;
    let secret = rest.split("totp_secret").nth(1)?.split_whitespace().next()?;
    Some(secret.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operator_secret_is_read_from_the_banner() {
        let line = "  operator@demo.bank   password operator-demo-password   role operator  totp_secret ABCDEF234567";
        assert_eq!(demo_operator_secret(line).as_deref(), Some("ABCDEF234567"));
        let alice =
            "  alice@demo.bank      password alice-demo-password      role customer  totp_secret XYZ  USD account 1";
        assert_eq!(demo_operator_secret(alice), None);
        assert_eq!(demo_operator_secret("bank-server listening on http://127.0.0.1:1"), None);
    }
}
