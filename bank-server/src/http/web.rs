//! The web app: static files served at `/` (its page) and under [`WEB_APP_PREFIX`] (its script,
//! style and the `bank-wasm` module), from [`super::HttpConfig::web_root`], with a strict
//! Content-Security-Policy.
//!
//! This module owns only file serving and the headers of those answers. It holds no rule: the
//! app is a client of the `/v1` API like any other, through `bank-wasm`. It serves regular files
//! of known types from that one folder and nothing else: no listing, no dot-files, no `..`, no
//! symlink out of the folder, nothing larger than [`WEB_FILE_BYTES_MAX`].

use std::path::{Path, PathBuf};

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::problem::ApiError;

/// Where the app's files other than its page are served: `/app/app.js`, `/app/pkg/bank_wasm.js`.
pub const WEB_APP_PREFIX: &str = "/app";
/// Largest file served (the wasm module is a few hundred KB).
pub const WEB_FILE_BYTES_MAX: u64 = 8 * 1024 * 1024;
/// Deepest file served below the web root (`pkg/bank_wasm.js` is 2).
pub const WEB_PATH_SEGMENTS_MAX: usize = 4;

/// The policy of every answer of this module: scripts only from this origin (no inline script,
/// no `eval`; `'wasm-unsafe-eval'` lets the page compile the wasm module), styles and images only
/// from here, API calls only to here, no plug-ins, no framing, no `<base>`, forms only to here.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// The web app folder of a checkout (`bank-wasm/web`, its `pkg/` written by
/// `scripts/build-wasm.sh`): the default of [`super::HttpConfig::web_root`].
pub fn checkout_web_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("bank-wasm").join("web")
}

/// `GET /`: the app's page.
pub(crate) async fn index(State(state): State<AppState>) -> Response {
    serve(&state, "index.html").await
}

/// `GET /app/{*path}`: one of the app's files.
pub(crate) async fn asset(State(state): State<AppState>, UrlPath(path): UrlPath<String>) -> Response {
    serve(&state, &path).await
}

async fn serve(state: &AppState, relative: &str) -> Response {
    let Some(root) = state.config().web_root.as_deref() else {
        return ApiError::not_found("web app").into_response();
    };
    let Some(content_type) = content_type_of(relative) else {
        return ApiError::not_found("file").into_response();
    };
    match read_file(root, relative).await {
        Some(bytes) => {
            let mut response = bytes.into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            // Revalidate every time: a new build must never run against an old module.
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            add_security_headers(&mut response);
            response
        }
        None if relative == "index.html" => {
            ApiError::not_found("web app (build it with scripts/build-wasm.sh)").into_response()
        }
        None => ApiError::not_found("file").into_response(),
    }
}

/// The headers of every answer of the app, page or file.
fn add_security_headers(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
}

/// The content type of a file the app may have, by extension; `None` for anything else (404).
fn content_type_of(relative: &str) -> Option<&'static str> {
    let extension = relative.rsplit_once('.')?.1;
    Some(match extension {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "wasm" => "application/wasm",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        _ => return None,
    })
}

/// Whether `relative` is a path the app may serve: 1 to [`WEB_PATH_SEGMENTS_MAX`] segments of
/// letters, digits, `-`, `_` and `.`, none empty or starting with a dot.
fn is_safe_path(relative: &str) -> bool {
    let segments: Vec<&str> = relative.split('/').collect();
    segments.len() <= WEB_PATH_SEGMENTS_MAX
        && segments.iter().all(|segment| {
            !segment.is_empty()
                && !segment.starts_with('.')
                && segment.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
}

/// The bytes of `relative` under `root`, if it is a safe path to a regular file inside `root` (after
/// resolving symlinks) of at most [`WEB_FILE_BYTES_MAX`] bytes.
async fn read_file(root: &Path, relative: &str) -> Option<Vec<u8>> {
    if !is_safe_path(relative) {
        return None;
    }
    let root = tokio::fs::canonicalize(root).await.ok()?;
    let path = tokio::fs::canonicalize(root.join(relative)).await.ok()?;
    if !path.starts_with(&root) {
        return None;
    }
    let metadata = tokio::fs::metadata(&path).await.ok()?;
    if !metadata.is_file() || metadata.len() > WEB_FILE_BYTES_MAX {
        return None;
    }
    let bytes = tokio::fs::read(&path).await.ok()?;
    (u64::try_from(bytes.len()).ok()? <= WEB_FILE_BYTES_MAX).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_paths_are_served() {
        for ok in ["index.html", "app.js", "pkg/bank_wasm.js", "pkg/bank_wasm_bg.wasm", "a/b/c/d.css"] {
            assert!(is_safe_path(ok), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../Cargo.toml",
            "pkg/../../x.js",
            ".env",
            "pkg/.hidden.js",
            "a//b.js",
            "a\\b.js",
            "a/b/c/d/e.js",
            "%2e%2e/x.js",
        ] {
            assert!(!is_safe_path(bad), "{bad}");
        }
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type_of("pkg/bank_wasm_bg.wasm"), Some("application/wasm"));
        assert_eq!(content_type_of("app.js"), Some("text/javascript; charset=utf-8"));
        assert_eq!(content_type_of("index.html"), Some("text/html; charset=utf-8"));
        assert_eq!(content_type_of("notes.txt"), None);
        assert_eq!(content_type_of("Makefile"), None);
    }

    #[tokio::test]
    async fn files_are_read_inside_the_root_only() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let root = dir.path().join("web");
        std::fs::create_dir_all(root.join("pkg")).expect("mkdir");
        std::fs::write(root.join("pkg").join("m.js"), "export {}").expect("write");
        std::fs::write(dir.path().join("secret.js"), "secret").expect("write");
        assert_eq!(read_file(&root, "pkg/m.js").await.as_deref(), Some(&b"export {}"[..]));
        assert_eq!(read_file(&root, "../secret.js").await, None);
        assert_eq!(read_file(&root, "pkg").await, None, "a folder is not served");
        assert_eq!(read_file(&root, "missing.js").await, None);
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path().join("secret.js"), root.join("link.js")).expect("symlink");
            assert_eq!(read_file(&root, "link.js").await, None, "a symlink out of the root is not followed");
        }
    }
}
