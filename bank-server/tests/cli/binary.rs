//! The compiled binary, run as a user would run it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use bank_server::config::VARIABLES;

pub(crate) fn bank_server(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bank-server"));
    // A clean environment: only what each test sets.
    for (name, _, _) in VARIABLES {
        command.env_remove(name);
    }
    command.env("BANK_DATA_DIR", data_dir).env("BANK_LOG", "warn").stdin(Stdio::null());
    command
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json_of(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("stdout is one JSON object")
}

#[test]
fn users_create_prints_the_user_id_and_totp_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = bank_server(dir.path())
        .env("BANK_PASSWORD", "a-long-operator-password")
        .args(["users", "create", "--email", "ops@bank.example", "--role", "operator"])
        .output()
        .expect("run");
    let json = json_of(&output);
    let user_id = json["user_id"].as_str().expect("user_id");
    assert_eq!(user_id.len(), 36, "a UUID: {json}");
    let secret = json["totp_secret"].as_str().expect("totp_secret");
    assert!(secret.len() >= 16 && secret.chars().all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c)));
    assert!(!text(&output.stderr).contains("a-long-operator-password"), "the password is never logged");

    // The creation is in the audit log: from the CLI, naming the user by id, holding no secret.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let records = runtime.block_on(async {
        let clock = std::sync::Arc::new(bank_core::clock::SystemClock);
        let local = bank_local::backend::LocalBackend::open(&bank_local::backend::LocalConfig::new(dir.path()), clock)
            .await
            .expect("open the data directory");
        let records = bank_core::audit::AuditLog::list(local.audit.as_ref(), 1, 10).await.expect("audit");
        local.close().await;
        records
    });
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0].record;
    assert_eq!((record.subject.as_str(), record.action.as_str()), ("cli", "user.created.operator"));
    assert_eq!(record.target, format!("user:{user_id}"));
    let printed = format!("{records:?}");
    assert!(!printed.contains("a-long-operator-password") && !printed.contains(secret), "no secret in the audit log");
    drop(runtime);

    // The same email again is refused, and nothing is printed on stdout.
    let again = bank_server(dir.path())
        .env("BANK_PASSWORD", "a-long-operator-password")
        .args(["users", "create", "--email", "ops@bank.example", "--role", "customer"])
        .output()
        .expect("run");
    assert!(!again.status.success());
    assert!(again.stdout.is_empty());
    assert!(text(&again.stderr).contains("already registered"), "{}", text(&again.stderr));
}

#[test]
fn users_create_reads_the_password_from_stdin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = bank_server(dir.path())
        .args(["users", "create", "--email", "carol@bank.example", "--role", "customer"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child.stdin.take().expect("stdin").write_all(b"carol-password-123\n").expect("write");
    let json = json_of(&child.wait_with_output().expect("wait"));
    assert!(json["user_id"].is_string() && json["totp_secret"].is_string(), "{json}");
}

#[test]
fn users_create_refuses_a_weak_password_and_external_auth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let weak = bank_server(dir.path())
        .env("BANK_PASSWORD", "short")
        .args(["users", "create", "--email", "x@bank.example", "--role", "customer"])
        .output()
        .expect("run");
    assert!(!weak.status.success());
    assert!(text(&weak.stderr).contains("weak password"), "{}", text(&weak.stderr));

    let external = bank_server(dir.path())
        .env("BANK_PASSWORD", "a-long-enough-password")
        .env("BANK_AUTH_MODE", "external")
        .env("BANK_JWKS_URL", "https://issuer.example/jwks.json")
        .args(["users", "create", "--email", "x@bank.example", "--role", "customer"])
        .output()
        .expect("run");
    assert!(!external.status.success());
    assert!(text(&external.stderr).contains("external"), "{}", text(&external.stderr));
    assert!(!dir.path().join("bank.sqlite").exists(), "refused before opening anything");
}

#[test]
fn migrate_succeeds_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    for _ in 0..2 {
        let output = bank_server(dir.path()).arg("migrate").output().expect("run");
        assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    }
    assert!(dir.path().join("bank.sqlite").exists());
}

#[test]
fn migrate_refuses_a_garbage_database_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("bank.sqlite");
    std::fs::write(&db, b"this is not a database, it is a shopping list").expect("write");
    let output = bank_server(dir.path()).arg("migrate").output().expect("run");
    assert_eq!(output.status.code(), Some(1), "a clean failure, not a panic (101)");
    let stderr = text(&output.stderr);
    assert!(stderr.contains(&db.display().to_string()), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(std::fs::read(&db).expect("read"), b"this is not a database, it is a shopping list", "untouched");
}

#[test]
fn a_bad_variable_is_named_with_exit_code_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = bank_server(dir.path()).env("BANK_WORKER_BATCH", "lots").arg("migrate").output().expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("BANK_WORKER_BATCH") && stderr.contains("lots"), "{stderr}");
}

#[test]
fn help_lists_every_variable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = bank_server(dir.path()).arg("--help").output().expect("run");
    assert!(output.status.success());
    let help = text(&output.stdout);
    for (name, _, _) in VARIABLES {
        assert!(help.contains(name), "{name} missing from --help");
    }
    for command in ["serve", "api", "worker", "notifications", "migrate", "users", "statements"] {
        assert!(help.contains(command), "{command} missing from --help");
    }
}

#[test]
fn demo_is_refused_with_external_auth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = bank_server(dir.path())
        .env("BANK_AUTH_MODE", "external")
        .env("BANK_JWKS_URL", "https://issuer.example/jwks.json")
        .args(["serve", "--demo"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("BANK_AUTH_MODE=builtin"), "{}", text(&output.stderr));
}

/// Longest a started server may take to print its address, or to stop after SIGTERM.
const PROCESS_WAIT: Duration = Duration::from_secs(20);

/// Starts `serve --demo` on a free port; answers the child, its address and what it printed.
fn start_demo(data_dir: &Path) -> (std::process::Child, String, String) {
    let mut child = bank_server(data_dir)
        .env("BANK_LISTEN", "127.0.0.1:0")
        .args(["serve", "--demo"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut printed = String::new();
    let address = loop {
        let line = lines.next().expect("the server printed its address").expect("line");
        printed.push_str(&line);
        printed.push('\n');
        if let Some(address) = line.strip_prefix("bank-server listening on http://") {
            break address.to_owned();
        }
    };
    (child, address, printed)
}

fn http_get(address: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(PROCESS_WAIT)).expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response
}

/// Sends SIGTERM and answers the exit status, within [`PROCESS_WAIT`].
fn terminate(mut child: std::process::Child) -> std::process::ExitStatus {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if started.elapsed() > PROCESS_WAIT {
            let _ = child.kill();
            panic!("the server did not stop within {PROCESS_WAIT:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(unix)]
#[test]
fn serve_demo_serves_seeds_once_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (child, address, first) = start_demo(dir.path());
    for email in ["alice@demo.bank", "bob@demo.bank", "operator@demo.bank"] {
        assert!(first.contains(email), "{first}");
    }
    assert!(first.contains(&format!("curl -s -X POST http://{address}/v1/auth/login")), "{first}");
    let live = http_get(&address, "/health/live");
    assert!(live.starts_with("HTTP/1.1 200"), "{live}");
    let ready = http_get(&address, "/health/ready");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    assert!(terminate(child).success(), "a graceful stop exits 0");

    // A restart reuses the same users and secrets (and, as the demo test checks, credits nothing).
    let (child, second_address, second) = start_demo(dir.path());
    let secrets = |text: &str| -> Vec<String> {
        text.lines().filter_map(|l| l.split("totp_secret ").nth(1)).map(str::to_owned).collect()
    };
    assert_eq!(secrets(&first).len(), 3);
    assert_eq!(secrets(&first), secrets(&second));
    assert!(http_get(&second_address, "/health/live").starts_with("HTTP/1.1 200"));
    assert!(terminate(child).success());
}

/// `statements --period`: a malformed period is a usage error (exit 2) naming the rule; a month
/// that has not ended, or one before any account existed, is refused (exit 1) with the reason;
/// none of them stores a statement.
#[test]
fn statements_command_refuses_bad_periods_and_stores_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    for bad in ["2026-13", "26-01", "2026/01"] {
        let output = bank_server(dir.path()).args(["statements", "--period", bad]).output().expect("run");
        assert_eq!(output.status.code(), Some(2), "{bad}: {}", text(&output.stderr));
        assert!(text(&output.stderr).contains("YYYY-MM"), "{bad}: {}", text(&output.stderr));
    }
    let output = bank_server(dir.path()).args(["statements", "--period", "9998-12"]).output().expect("run");
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("has not ended"), "{}", text(&output.stderr));
    let output = bank_server(dir.path()).args(["statements", "--period", "1999-01"]).output().expect("run");
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("no customer account was open during 1999-01"), "{}", text(&output.stderr));
    let statements = dir.path().join("blobs/objects/statements.d");
    assert!(!statements.exists(), "nothing stored under {}", statements.display());
}

/// A graceful stop checkpoints and seals the audit log; `audit verify` then passes (exit 0, the
/// verdict as JSON), `audit export` prints the records as JSON lines, and after a record is
/// edited in the file `audit verify` exits 1 naming it.
#[cfg(unix)]
#[test]
fn audit_verify_and_export_after_a_graceful_stop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (child, address, _) = start_demo(dir.path());
    // Served (and so its signal handler installed) before it is stopped.
    assert!(http_get(&address, "/health/live").starts_with("HTTP/1.1 200"));
    assert!(terminate(child).success());

    let verified = bank_server(dir.path()).args(["audit", "verify"]).output().expect("run");
    let report = json_of(&verified);
    assert_eq!(report["ok"], true, "{report}");
    assert!(report["segments_checked"].as_u64().expect("segments") >= 1, "the stop sealed a checkpoint: {report}");
    let records = report["records_checked"].as_u64().expect("records");
    assert!(records >= 1, "{report}");

    let exported = bank_server(dir.path()).args(["audit", "export", "--from", "1", "--to", "2"]).output().expect("run");
    assert!(exported.status.success(), "{}", text(&exported.stderr));
    let lines: Vec<serde_json::Value> = text(&exported.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 2.min(usize::try_from(records).expect("fits")));
    assert_eq!(lines[0]["seq"], 1);
    assert_eq!(lines[0]["prev_hash"], "0".repeat(64));
    assert_eq!(lines[0]["hash"].as_str().map(str::len), Some(64));

    let conn = rusqlite::Connection::open(dir.path().join("audit.sqlite")).expect("open");
    conn.execute_batch("DROP TRIGGER audit_records_no_update").expect("drop trigger");
    conn.execute("UPDATE audit_records SET target = 'account:someone-else' WHERE seq = 1", []).expect("edit");
    drop(conn);
    let failed = bank_server(dir.path()).args(["audit", "verify"]).output().expect("run");
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed.stderr));
    assert!(text(&failed.stderr).contains("failed verification at record 1"), "{}", text(&failed.stderr));
    let report: serde_json::Value = serde_json::from_slice(&failed.stdout).expect("the verdict is printed");
    assert_eq!(report["first_bad_seq"], 1);
}
