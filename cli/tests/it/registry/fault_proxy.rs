//! A loopback HTTP proxy in front of a registry that misbehaves on demand:
//! it corrupts a blob, truncates a response, answers 429 with
//! `Retry-After`, answers 500 and then lets the next request through, or
//! drops the connection (a TCP reset) in the middle of a blob. It logs every
//! request with its `Range` header and the status it answered, so tests
//! assert what the client did (retried, resumed) by counting, not timing.
//!
//! It also accepts absolute-form targets (`GET http://host/v2/ HTTP/1.1`),
//! so it can stand in as `HTTP_PROXY` to prove which requests went through
//! a proxy.

use std::io::Write;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::http::{Request, Server, reason, respond};

/// What to do to matching requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Flip one byte in the middle of the body (the size stays right).
    Corrupt,
    /// Send the true `Content-Length`, half the body, then close cleanly.
    Truncate,
    /// Answer `429 Too Many Requests` with `Retry-After: SECONDS`.
    TooManyRequests { retry_after: u64 },
    /// Answer `500 Internal Server Error`.
    ServerError,
    /// Send the headers and half the body, then reset the connection.
    Drop,
    /// Answer `401 Unauthorized` with no challenge, as a registry does when
    /// a token expires mid-transfer.
    Unauthorized,
    /// Answer `307 Temporary Redirect` to the same path on `host`
    /// (`127.0.0.1:PORT`), as a registry redirecting to blob storage.
    RedirectTo(String),
}

/// Which requests a fault applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `GET /v2/NAME/blobs/DIGEST` of layers and configs.
    BlobGet,
    /// `GET /v2/NAME/blobs/DIGEST` of this digest only.
    BlobGetOf(String),
    /// `GET` or `HEAD /v2/NAME/manifests/REF`.
    Manifest,
    /// `PATCH /v2/NAME/blobs/uploads/ID`: a chunk of a blob upload.
    UploadPatch,
    /// Any request.
    Any,
}

impl Target {
    fn matches(&self, request: &Request) -> bool {
        let path = request.path();
        match self {
            Target::BlobGet => request.method == "GET" && path.contains("/blobs/sha256:"),
            Target::BlobGetOf(digest) => {
                request.method == "GET" && path.ends_with(&format!("/blobs/{digest}"))
            }
            Target::Manifest => path.contains("/manifests/"),
            Target::UploadPatch => request.method == "PATCH" && path.contains("/blobs/uploads/"),
            Target::Any => true,
        }
    }
}

/// One request the proxy saw.
#[derive(Clone, Debug)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    /// The status sent (the upstream's, or the fault's).
    pub status: u16,
    /// The fault applied, if any.
    pub fault: Option<Fault>,
    /// The request came in absolute form (as to a forward proxy).
    pub proxied: bool,
    /// It carried an `Authorization` header.
    pub authorized: bool,
    /// Its `digest` query parameter (the closing `PUT` of an upload).
    pub digest: Option<String>,
    /// Its `mount` query parameter (a cross-repository mount's `POST`).
    pub mount: Option<String>,
    /// The body's length as received.
    pub body_len: usize,
    /// The body came with `Transfer-Encoding: chunked` (no length up front).
    pub chunked: bool,
}

struct Rule {
    target: Target,
    fault: Fault,
    /// How many more requests it applies to; `None` for all of them.
    remaining: Option<usize>,
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    log: Vec<Logged>,
}

/// A running fault proxy; stopped on drop.
pub struct FaultProxy {
    server: Server,
    state: Arc<Mutex<State>>,
}

impl FaultProxy {
    /// A proxy forwarding to `upstream` (`127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> FaultProxy {
        let state = Arc::new(Mutex::new(State::default()));
        let client = reqwest::blocking::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(None)
            .build()
            .unwrap();
        let serving = state.clone();
        let upstream = upstream.to_owned();
        let server = Server::start(move |request, stream| {
            forward(&client, &upstream, &serving, request, stream);
        });
        FaultProxy { server, state }
    }

    /// `127.0.0.1:PORT`: use it as the registry host in references.
    pub fn host(&self) -> String {
        self.server.host()
    }

    /// Applies `fault` to the next `times` requests matching `target`.
    pub fn inject(&self, target: Target, fault: Fault, times: usize) {
        self.state.lock().unwrap().rules.push(Rule {
            target,
            fault,
            remaining: Some(times),
        });
    }

    /// Applies `fault` to every request matching `target` from now on.
    pub fn inject_always(&self, target: Target, fault: Fault) {
        self.state.lock().unwrap().rules.push(Rule {
            target,
            fault,
            remaining: None,
        });
    }

    /// Every request so far, in order.
    pub fn log(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }
}

/// Takes the first live rule that matches `request`.
fn take_fault(state: &Mutex<State>, request: &Request) -> Option<Fault> {
    let mut state = state.lock().unwrap();
    let rule = state
        .rules
        .iter_mut()
        .find(|rule| rule.remaining.is_none_or(|n| n > 0) && rule.target.matches(request))?;
    if let Some(n) = rule.remaining.as_mut() {
        *n -= 1;
    }
    Some(rule.fault.clone())
}

fn forward(
    client: &reqwest::blocking::Client,
    upstream: &str,
    state: &Mutex<State>,
    request: Request,
    mut stream: TcpStream,
) {
    let fault = take_fault(state, &request);
    let mut logged = Logged {
        method: request.method.clone(),
        path: request.path().to_owned(),
        range: request.header("range").map(str::to_owned),
        status: 0,
        fault: fault.clone(),
        proxied: request.target.starts_with("http://"),
        authorized: request.header("authorization").is_some(),
        digest: request
            .query()
            .into_iter()
            .find(|(key, _)| key == "digest")
            .map(|(_, value)| value),
        mount: request
            .query()
            .into_iter()
            .find(|(key, _)| key == "mount")
            .map(|(_, value)| value),
        body_len: request.body.len(),
        chunked: request
            .header("transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked")),
    };
    if let Some(Fault::RedirectTo(host)) = &fault {
        logged.status = 307;
        state.lock().unwrap().log.push(logged);
        let location = format!("http://{host}{}", request.path_and_query());
        let _ = respond(&mut stream, 307, &[("Location", location.as_str())], b"");
        return;
    }
    let early = match &fault {
        Some(Fault::TooManyRequests { retry_after }) => Some((429, Some(*retry_after))),
        Some(Fault::ServerError) => Some((500, None)),
        Some(Fault::Unauthorized) => Some((401, None)),
        _ => None,
    };
    if let Some((status, retry_after)) = early {
        logged.status = status;
        state.lock().unwrap().log.push(logged);
        let retry = retry_after.map(|secs| secs.to_string());
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(retry) = &retry {
            headers.push(("Retry-After", retry.as_str()));
        }
        let body = format!(r#"{{"errors":[{{"code":"UNKNOWN","message":"injected {status}"}}]}}"#);
        let _ = respond(&mut stream, status, &headers, body.as_bytes());
        return;
    }

    let method = reqwest::Method::from_bytes(request.method.as_bytes()).unwrap();
    let url = format!("http://{upstream}{}", request.path_and_query());
    let mut outgoing = client.request(method, url);
    for (name, value) in &request.headers {
        let lower = name.to_ascii_lowercase();
        if matches!(
            lower.as_str(),
            "connection"
                | "transfer-encoding"
                | "content-length"
                | "keep-alive"
                | "proxy-connection"
        ) {
            continue;
        }
        // Host passes through, so the registry builds Location URLs that
        // point back at this proxy.
        outgoing = outgoing.header(name.as_str(), value.as_str());
    }
    if !request.body.is_empty() || request.header("content-length").is_some() {
        outgoing = outgoing.body(request.body.clone());
    }
    let response = match outgoing.send() {
        Ok(response) => response,
        Err(err) => {
            logged.status = 502;
            state.lock().unwrap().log.push(logged);
            let _ = respond(&mut stream, 502, &[], err.to_string().as_bytes());
            return;
        }
    };
    let status = response.status().as_u16();
    logged.status = status;
    state.lock().unwrap().log.push(logged);

    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in response.headers() {
        if matches!(
            name.as_str(),
            "connection" | "transfer-encoding" | "keep-alive"
        ) {
            continue;
        }
        head.push_str(&format!(
            "{}: {}\r\n",
            name,
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    head.push_str("Connection: close\r\n\r\n");
    let is_head = request.method == "HEAD";
    let body = if is_head {
        Vec::new()
    } else {
        response.bytes().map(|b| b.to_vec()).unwrap_or_default()
    };
    let _ = stream.write_all(head.as_bytes());
    match fault {
        Some(Fault::Corrupt) if !body.is_empty() => {
            let mut body = body;
            let middle = body.len() / 2;
            body[middle] ^= 0xff;
            let _ = stream.write_all(&body);
        }
        Some(Fault::Truncate) => {
            let _ = stream.write_all(&body[..body.len() / 2]);
            let _ = stream.flush();
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        Some(Fault::Drop) => {
            let _ = stream.write_all(&body[..body.len() / 2]);
            let _ = stream.flush();
            // Let the bytes leave before the reset discards the queue.
            std::thread::sleep(Duration::from_millis(50));
            // SO_LINGER 0: close sends RST, as a dropped connection does.
            let _ = rustix::net::sockopt::set_socket_linger(&stream, Some(Duration::ZERO));
            drop(stream);
        }
        _ => {
            let _ = stream.write_all(&body);
        }
    }
}
