//! The run's own HTTP/1.1 connections to the server, for the scheduled requests.
//!
//! The generator shares the machine with the server it measures, so what it spends on a request
//! is taken from the server. Through `bank-client` (reqwest: a URL parsed, a request id made,
//! headers cloned, a pooled hyper client, the whole answer decoded into typed values) a request
//! cost the generator ~45 µs of CPU at ten times the seed's peak, a third of the server's own.
//! Here a request is a prepared path, the headers of its user and one hyper exchange on a kept
//! connection; the answer's status is checked and only what the run needs is decoded (an
//! account's and a page's shape, a transfer's id and status). The users' sign-in, setup and the
//! checks after a run stay on `bank-client`.
//!
//! Connections are opened when none is idle and kept while they stay usable; the run's
//! connection cap ([`crate::run::Plan::connections`]) bounds how many scheduled requests are on
//! them at once (the settlement polls come on top, as they did through `bank-client`). HTTPS
//! targets are reached with rustls and the Web PKI roots, as `bank-client` does.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use parking_lot::{Mutex, RwLock};
use tokio::net::TcpStream;

/// Largest answer read (a history page of 20 entries is ~6 KiB).
const ANSWER_BYTES_MAX: usize = 1 << 20;

/// Why a request got no successful answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The server answered with this error status.
    #[error("HTTP {0}")]
    Status(u16),
    /// No answer within the request's time limit.
    #[error("no answer within the time limit")]
    Timeout,
    /// No connection could be opened.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The connection failed during the exchange.
    #[error("connection failed: {0}")]
    Transport(String),
    /// A success status with an answer of the wrong shape.
    #[error("unexpected answer: {0}")]
    Decode(String),
}

impl WireError {
    /// The label the run's error counts use: the status, or what went wrong without one.
    pub fn label(&self) -> String {
        match self {
            Self::Status(status) => status.to_string(),
            Self::Timeout => "timeout".to_owned(),
            Self::Connect(_) => "connect".to_owned(),
            Self::Transport(_) => "transport".to_owned(),
            Self::Decode(_) => "decode".to_owned(),
        }
    }
}

/// A successful answer.
#[derive(Debug)]
pub struct Answer {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The body as `T`.
    pub fn json<'a, T: serde::Deserialize<'a>>(&'a self) -> Result<T, WireError> {
        serde_json::from_slice(&self.body).map_err(|e| WireError::Decode(e.to_string()))
    }
}

/// A user's `Authorization` header, replaced when its token is refreshed.
#[derive(Debug)]
pub struct Bearer(RwLock<HeaderValue>);

impl Bearer {
    /// The header for `access_token`.
    pub fn new(access_token: &str) -> Result<Self, WireError> {
        Ok(Self(RwLock::new(Self::header(access_token)?)))
    }

    /// Sends `access_token` from now on.
    pub fn set(&self, access_token: &str) -> Result<(), WireError> {
        *self.0.write() = Self::header(access_token)?;
        Ok(())
    }

    fn header(access_token: &str) -> Result<HeaderValue, WireError> {
        let mut value = HeaderValue::try_from(format!("Bearer {access_token}"))
            .map_err(|_| WireError::Decode("an access token that is not a header value".to_owned()))?;
        value.set_sensitive(true);
        Ok(value)
    }

    fn get(&self) -> HeaderValue {
        self.0.read().clone()
    }
}

/// How connections reach the server.
struct Target {
    /// `host:port` to connect to.
    address: String,
    /// The `Host` header.
    host: HeaderValue,
    /// TLS for an `https` target: the connector and the name the certificate must carry.
    tls: Option<(tokio_rustls::TlsConnector, rustls::pki_types::ServerName<'static>)>,
}

/// The connections to one server, shared by every scheduled request of a run.
pub struct Wire {
    target: Target,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
    timeout: Duration,
}

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wire").field("address", &self.target.address).finish_non_exhaustive()
    }
}

impl Wire {
    /// Connections to the server at `base_url` (`http://` or `https://`, no path), each request
    /// answered within `timeout` or counted a timeout.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, String> {
        let uri: Uri = base_url.parse().map_err(|e| format!("{base_url}: {e}"))?;
        let host = uri.host().ok_or_else(|| format!("{base_url}: no host"))?.to_owned();
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(format!("{base_url}: not an http or https URL")),
        };
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/" && !p.as_str().is_empty()) {
            return Err(format!("{base_url}: a base URL has no path"));
        }
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = uri.authority().map_or(host.clone(), |a| a.as_str().to_owned());
        let tls = if https {
            let name = rustls::pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
                .map_err(|e| format!("{base_url}: {e}"))?;
            let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
            let config =
                rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                    .with_safe_default_protocol_versions()
                    .map_err(|e| e.to_string())?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
            Some((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        let target = Target {
            address: format!("{host}:{port}"),
            host: HeaderValue::try_from(authority).map_err(|e| format!("{base_url}: {e}"))?,
            tls,
        };
        Ok(Self { target, idle: Mutex::new(Vec::new()), timeout })
    }

    /// `GET path` as the user of `bearer`.
    pub async fn get(&self, path: &Uri, bearer: &Bearer) -> Result<Answer, WireError> {
        self.send(Method::GET, path, bearer, &[], Bytes::new()).await
    }

    /// `POST path` with the JSON `body` and `headers`, as the user of `bearer`.
    pub async fn post(
        &self,
        path: &Uri,
        bearer: &Bearer,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Result<Answer, WireError> {
        self.send(Method::POST, path, bearer, headers, body).await
    }

    async fn send(
        &self,
        method: Method,
        path: &Uri,
        bearer: &Bearer,
        extra: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Result<Answer, WireError> {
        let mut request = Request::new(Full::new(body));
        let headers = request.headers_mut();
        headers.insert(HOST, self.target.host.clone());
        headers.insert(AUTHORIZATION, bearer.get());
        if method == Method::POST {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        for (name, value) in extra {
            headers.insert(name.clone(), value.clone());
        }
        *request.method_mut() = method;
        *request.uri_mut() = path.clone();
        match tokio::time::timeout(self.timeout, self.exchange(request)).await {
            Ok(answer) => answer,
            Err(_) => Err(WireError::Timeout),
        }
    }

    async fn exchange(&self, request: Request<Full<Bytes>>) -> Result<Answer, WireError> {
        let mut sender = self.connection().await?;
        let response =
            sender.send_request(request).await.map_err(|e| WireError::Transport(crate::run::error_chain(&e)))?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, ANSWER_BYTES_MAX)
            .collect()
            .await
            .map_err(|e| WireError::Transport(e.to_string()))?
            .to_bytes();
        // The whole answer is read: the connection can carry the next request.
        if !sender.is_closed() {
            self.idle.lock().push(sender);
        }
        if !parts.status.is_success() {
            return Err(WireError::Status(parts.status.as_u16()));
        }
        Ok(Answer { headers: parts.headers, body })
    }

    /// An idle connection ready for a request, or a new one.
    async fn connection(&self) -> Result<SendRequest<Full<Bytes>>, WireError> {
        loop {
            let Some(mut sender) = self.idle.lock().pop() else { break };
            if sender.ready().await.is_ok() {
                return Ok(sender);
            }
        }
        let connect = |e: &dyn std::error::Error| WireError::Connect(crate::run::error_chain(e));
        let stream = TcpStream::connect(&self.target.address).await.map_err(|e| connect(&e))?;
        stream.set_nodelay(true).map_err(|e| connect(&e))?;
        let sender = match &self.target.tls {
            None => handshake(stream).await,
            Some((connector, name)) => {
                handshake(connector.connect(name.clone(), stream).await.map_err(|e| connect(&e))?).await
            }
        };
        sender.map_err(|e| connect(&e))
    }
}

/// An HTTP/1.1 connection over `io`, driven by a task of its own until it closes.
async fn handshake<T>(io: T) -> Result<SendRequest<Full<Bytes>>, hyper::Error>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        // Ends when the server closes the connection or the last sender is dropped.
        let _ = connection.await;
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked() {
        assert!(Wire::new("http://127.0.0.1:8080", Duration::from_secs(1)).is_ok());
        assert!(Wire::new("https://bank.example", Duration::from_secs(1)).is_ok());
        assert!(Wire::new("http://127.0.0.1:8080/", Duration::from_secs(1)).is_ok());
        for bad in ["ftp://127.0.0.1", "127.0.0.1:8080", "http://127.0.0.1:8080/v1", "not a url"] {
            assert!(Wire::new(bad, Duration::from_secs(1)).is_err(), "{bad}");
        }
    }

    /// A loopback server that answers each connection's requests in turn with `answers` (raw
    /// HTTP/1.1 answers; after the last one it closes the connection), recording the requests'
    /// heads; returns its address, the heads and the connections accepted.
    async fn server(answers: &'static [&'static str]) -> (String, Arc<Mutex<Vec<String>>>, Arc<Mutex<u32>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = format!("http://{}", listener.local_addr().expect("address"));
        let (heads, accepted) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(0)));
        let (heads_seen, accepted_seen) = (Arc::clone(&heads), Arc::clone(&accepted));
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                *accepted.lock() += 1;
                let heads = Arc::clone(&heads);
                tokio::spawn(async move {
                    let (mut request, mut buf, mut answered) = (Vec::new(), [0u8; 4096], 0);
                    while let Ok(n @ 1..) = socket.read(&mut buf).await {
                        request.extend_from_slice(&buf[..n]);
                        // Bodiless GETs: a request ends with its blank line.
                        while let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                            heads.lock().push(String::from_utf8_lossy(&request[..end]).into_owned());
                            request.drain(..end + 4);
                            if socket.write_all(answers[answered].as_bytes()).await.is_err() {
                                return;
                            }
                            answered += 1;
                            if answered == answers.len() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (address, heads_seen, accepted_seen)
    }

    #[tokio::test]
    async fn a_kept_connection_carries_the_next_request_and_a_closed_one_is_replaced() {
        const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\n{\"id\":1}";
        const NOT_FOUND: &str = "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
        // Each connection answers two requests, then the server closes it.
        let (address, heads, accepted) = server(&[OK, NOT_FOUND]).await;
        let wire = Wire::new(&address, Duration::from_secs(5)).expect("wire");
        let bearer = Bearer::new("token-1").expect("bearer");
        let path = Uri::from_static("/v1/accounts/1");

        let answer = wire.get(&path, &bearer).await.expect("200");
        assert_eq!(&answer.body[..], b"{\"id\":1}");
        bearer.set("token-2").expect("new token");
        assert_eq!(wire.get(&path, &bearer).await.expect_err("404"), WireError::Status(404));
        assert_eq!(*accepted.lock(), 1, "the second request went on the kept connection");
        // That connection was closed after its second answer: the next request opens another.
        wire.get(&path, &bearer).await.expect("200 on a new connection");
        assert_eq!(*accepted.lock(), 2);

        let heads = heads.lock();
        assert!(heads[0].starts_with("GET /v1/accounts/1 HTTP/1.1\r\n"), "{}", heads[0]);
        let host = address.trim_start_matches("http://");
        for (head, token) in heads.iter().zip(["token-1", "token-2", "token-2"]) {
            let head = head.to_ascii_lowercase();
            assert!(head.contains(&format!("host: {host}")), "{head}");
            assert!(head.contains(&format!("authorization: bearer {token}")), "{head}");
        }
    }

    #[tokio::test]
    async fn no_server_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = format!("http://{}", listener.local_addr().expect("address"));
        drop(listener);
        let wire = Wire::new(&address, Duration::from_secs(5)).expect("wire");
        let bearer = Bearer::new("token").expect("bearer");
        let error = wire.get(&Uri::from_static("/"), &bearer).await.expect_err("nothing listens");
        assert!(matches!(error, WireError::Connect(_)), "{error:?}");
    }

    #[test]
    fn labels_name_the_status_or_what_failed() {
        assert_eq!(WireError::Status(503).label(), "503");
        assert_eq!(WireError::Timeout.label(), "timeout");
        assert_eq!(WireError::Connect("refused".into()).label(), "connect");
    }
}
