//! The HTTP side: one connection pool per registry host, authentication
//! ([`super::auth`]), retries with backoff, and redirects followed by hand
//! so that credentials never leave their host.

use std::collections::HashMap;
use std::io::Read;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::blocking::{RequestBuilder, Response};
use reqwest::header::{HeaderValue, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE};

use crate::registry::auth::{Challenge, TokenCache, TokenResponse, parse_challenge};
use crate::registry::error::{error_detail, redact_url};
use crate::registry::settings::is_loopback;
use crate::registry::{Credential, CredentialSource, RegistryError, RegistrySettings};

type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// How often and how patiently to retry 5xx, 408, 429 and broken
/// connections.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// The first backoff; it doubles with each retry.
    pub base_delay: Duration,
    /// No wait is longer than this, `Retry-After` included.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        self.base_delay
            .saturating_mul(1 << attempt.min(16))
            .min(self.max_delay)
    }
}

/// A registry client: credentials, per-host settings, connection pools and
/// tokens. Share one per command (`&Client` is enough in every thread).
pub struct Client {
    credentials: Arc<dyn CredentialSource>,
    settings: RegistrySettings,
    retry: RetryPolicy,
    hosts: Mutex<HashMap<String, Arc<Host>>>,
}

/// One registry endpoint (a registry host, or one of its mirrors).
pub(crate) struct Host {
    /// The name credentials are looked up by (`docker.io`, `127.0.0.1:5000`).
    pub name: String,
    /// `https://registry-1.docker.io`, `http://127.0.0.1:5000`.
    pub base: String,
    http: reqwest::blocking::Client,
    /// The same settings on reqwest's async client, made on first use:
    /// streamed bodies go out through it (see [`Client::send_streamed`]).
    streaming: OnceLock<Result<reqwest::Client, String>>,
    config: HttpConfig,
    challenge: Mutex<Option<Challenge>>,
    tokens: TokenCache,
}

/// What both HTTP clients of a host are built with.
#[derive(Clone)]
struct HttpConfig {
    insecure: bool,
    proxies: Vec<reqwest::Proxy>,
    certificates: Vec<reqwest::Certificate>,
}

/// Applies a host's settings to a reqwest client builder, blocking or
/// async (their methods have the same names).
macro_rules! configure {
    ($builder:expr, $config:expr) => {{
        let mut builder = $builder
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(30))
            .tcp_keepalive(Duration::from_secs(30))
            .user_agent(concat!("hoist/", env!("CARGO_PKG_VERSION")))
            .danger_accept_invalid_certs($config.insecure)
            .no_proxy();
        for proxy in &$config.proxies {
            builder = builder.proxy(proxy.clone());
        }
        for certificate in &$config.certificates {
            builder = builder.add_root_certificate(certificate.clone());
        }
        builder
    }};
}

impl Host {
    pub(crate) fn http_client(&self) -> reqwest::blocking::Client {
        self.http.clone()
    }
}

impl Host {
    /// How the registry asked to be authenticated on `/v2/`.
    pub(crate) fn challenge(&self) -> Option<Challenge> {
        self.challenge
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn http(&self) -> &reqwest::blocking::Client {
        &self.http
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(credentials: Arc<dyn CredentialSource>, settings: RegistrySettings) -> Client {
        Client {
            credentials,
            settings,
            retry: RetryPolicy::default(),
            hosts: Mutex::new(HashMap::new()),
        }
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Client {
        self.retry = retry;
        self
    }

    pub(crate) fn settings(&self) -> &RegistrySettings {
        &self.settings
    }

    pub(crate) fn credentials(&self) -> &dyn CredentialSource {
        self.credentials.as_ref()
    }

    /// The endpoint of registry `domain` (as references name it),
    /// connected and pinged on first use.
    pub(crate) fn host(&self, domain: &str) -> Result<Arc<Host>> {
        let api = if domain == "docker.io" {
            "registry-1.docker.io"
        } else {
            domain
        };
        self.endpoint(domain, None, api)
    }

    /// A mirror endpoint (`https://mirror.example`, `http://127.0.0.1:5001/`).
    pub(crate) fn mirror(&self, url: &str) -> Result<Arc<Host>> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|err| RegistryError::invalid(format!("mirror {url}"), err))?;
        let Some(name) = parsed.host_str() else {
            return Err(RegistryError::invalid(format!("mirror {url}"), "no host"));
        };
        let name = match parsed.port() {
            Some(port) => format!("{name}:{port}"),
            None => name.to_owned(),
        };
        let base = url.trim_end_matches('/').to_owned();
        self.endpoint(&name, Some(base), &name)
    }

    fn endpoint(&self, name: &str, base: Option<String>, api: &str) -> Result<Arc<Host>> {
        let key = base.clone().unwrap_or_else(|| name.to_owned());
        if let Some(host) = self.lock_hosts().get(&key) {
            return Ok(host.clone());
        }
        let settings = self.settings.for_host(name);
        let mut certificates = Vec::new();
        for path in &settings.ca_certificates {
            let pem = std::fs::read(path)
                .map_err(|err| RegistryError::invalid(path.display().to_string(), err))?;
            let certificate = reqwest::Certificate::from_pem(&pem)
                .map_err(|err| RegistryError::invalid(path.display().to_string(), err))?;
            certificates.push(certificate);
        }
        let config = HttpConfig {
            insecure: settings.insecure,
            proxies: env_proxies()?,
            certificates,
        };
        let http = configure!(reqwest::blocking::Client::builder(), config)
            .timeout(None)
            .build()
            .map_err(|err| RegistryError::transport(api, &err))?;
        let ping = |base: String, http, probe| self.ping(name, base, http, config.clone(), probe);
        let host = match base {
            Some(base) => ping(base, http, false)?,
            // Docker's order for an insecure registry: HTTPS (any
            // certificate) first, then plain HTTP. On loopback, where
            // test and development registries speak plain HTTP, the other
            // way round: a plain server may never answer a TLS hello.
            None if settings.insecure => {
                let (first, second) = if is_loopback(name) {
                    ("http", "https")
                } else {
                    ("https", "http")
                };
                match ping(format!("{first}://{api}"), http.clone(), true) {
                    Ok(host) => host,
                    Err(_) => ping(format!("{second}://{api}"), http, false)?,
                }
            }
            None => ping(format!("https://{api}"), http, false)?,
        };
        let host = Arc::new(host);
        self.lock_hosts().insert(key, host.clone());
        Ok(host)
    }

    fn lock_hosts(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Host>>> {
        self.hosts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `GET /v2/`: learns how the registry wants to be authenticated.
    fn ping(
        &self,
        name: &str,
        base: String,
        http: reqwest::blocking::Client,
        config: HttpConfig,
        probe: bool,
    ) -> Result<Host> {
        let url = format!("{base}/v2/");
        let response = if probe {
            // Probing a scheme on an insecure host: no retries, and no
            // long wait for a server that does not speak it.
            http.get(&url)
                .timeout(Duration::from_secs(5))
                .send()
                .map_err(|err| RegistryError::transport(&url, &err))?
        } else {
            self.send_retrying(&http, &|| Ok(http.get(&url)))?
        };
        let challenge = match response.status() {
            StatusCode::UNAUTHORIZED => {
                header_str(response.headers().get(WWW_AUTHENTICATE)).and_then(parse_challenge)
            }
            status if status.is_success() => None,
            // Some registries answer /v2/ with 404 yet serve the API.
            StatusCode::NOT_FOUND => None,
            status => {
                return Err(RegistryError::Status {
                    url,
                    status: status.as_u16(),
                    detail: String::new(),
                });
            }
        };
        Ok(Host {
            name: name.to_owned(),
            base,
            http,
            streaming: OnceLock::new(),
            config,
            challenge: Mutex::new(challenge),
            tokens: TokenCache::default(),
        })
    }

    /// Sends a request to `host` with authorization for `scopes`, retrying
    /// as the policy says. A 401 gets one fresh token and another try
    /// (tokens can expire mid-transfer). `make` builds the request anew
    /// each time (it reopens bodies). Statuses other than 401 and the
    /// retried ones are the caller's to interpret.
    pub(crate) fn request(
        &self,
        host: &Host,
        scopes: &[String],
        make: &dyn Fn(&reqwest::blocking::Client, &str) -> Result<RequestBuilder>,
    ) -> Result<Response> {
        let mut refreshed = false;
        loop {
            let auth = self.authorization(host, scopes)?;
            let response = self.send_retrying(&host.http, &|| {
                let builder = make(&host.http, &host.base)?;
                Ok(match &auth {
                    Some(Auth::Basic(user, password)) => builder.basic_auth(user, Some(password)),
                    Some(Auth::Bearer(token)) => builder.bearer_auth(token),
                    None => builder,
                })
            })?;
            if response.status() != StatusCode::UNAUTHORIZED || refreshed {
                return Ok(response);
            }
            refreshed = true;
            host.tokens.invalidate(scopes);
            let challenge =
                header_str(response.headers().get(WWW_AUTHENTICATE)).and_then(parse_challenge);
            let mut current = host.challenge.lock().unwrap_or_else(|p| p.into_inner());
            match challenge {
                Some(challenge) => *current = Some(challenge),
                None if current.is_none() => return Ok(response),
                None => {}
            }
        }
    }

    /// A GET that follows redirects by hand: with authorization on the
    /// registry's own origin, without it anywhere else (blob storage).
    pub(crate) fn get_following(
        &self,
        host: &Host,
        scopes: &[String],
        url: &str,
        headers: &[(&str, String)],
    ) -> Result<Response> {
        let with_headers = |mut builder: RequestBuilder| {
            for (name, value) in headers {
                builder = builder.header(*name, value);
            }
            builder
        };
        let mut target = url.to_owned();
        for _ in 0..10 {
            let same_origin = origin(&target) == origin(&host.base);
            let response = if same_origin {
                self.request(host, scopes, &|http, _| Ok(with_headers(http.get(&target))))?
            } else {
                self.send_retrying(&host.http, &|| Ok(with_headers(host.http.get(&target))))?
            };
            if !response.status().is_redirection() {
                return Ok(response);
            }
            let location = header_str(response.headers().get(LOCATION)).ok_or_else(|| {
                RegistryError::invalid(redact_url(&target), "a redirect without a location")
            })?;
            target = response
                .url()
                .join(location)
                .map_err(|err| RegistryError::invalid(redact_url(&target), err))?
                .to_string();
        }
        Err(RegistryError::invalid(
            redact_url(url),
            "too many redirects",
        ))
    }

    /// Sends with retries on transport errors, 5xx, 408 and 429
    /// (`Retry-After` honoured). The last response is returned whatever its
    /// status.
    pub(crate) fn send_retrying(
        &self,
        http: &reqwest::blocking::Client,
        make: &dyn Fn() -> Result<RequestBuilder>,
    ) -> Result<Response> {
        let mut attempt = 0;
        loop {
            let request = make()?
                .build()
                .map_err(|err| RegistryError::transport("request", &err))?;
            let url = request.url().to_string();
            let last = attempt + 1 >= self.retry.attempts;
            match http.execute(request) {
                Ok(response) => {
                    let status = response.status();
                    let retryable = status.is_server_error()
                        || status == StatusCode::REQUEST_TIMEOUT
                        || status == StatusCode::TOO_MANY_REQUESTS;
                    if !retryable || last || status == StatusCode::NOT_IMPLEMENTED {
                        return Ok(response);
                    }
                    let wait = retry_after(&response)
                        .unwrap_or_else(|| self.retry.backoff(attempt))
                        .min(self.retry.max_delay);
                    drop(response);
                    std::thread::sleep(wait);
                }
                Err(err) if !last && !err.is_builder() && !err.is_redirect() => {
                    std::thread::sleep(self.retry.backoff(attempt));
                }
                Err(err) => return Err(RegistryError::transport(&url, &err)),
            }
            attempt += 1;
        }
    }

    pub(crate) fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    fn authorization(&self, host: &Host, scopes: &[String]) -> Result<Option<Auth>> {
        let challenge = host
            .challenge
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(self.credentials.credential_for(&host.name)?.map(
                |credential| match credential {
                    Credential::Basic { username, password } => Auth::Basic(username, password),
                    Credential::IdentityToken { username, token } => Auth::Basic(username, token),
                },
            )),
            Some(Challenge::Bearer { realm, service }) => {
                if let Some(token) = host.tokens.get(scopes, Instant::now()) {
                    return Ok(Some(Auth::Bearer(token.value)));
                }
                let token = self.fetch_token(host, &realm, service.as_deref(), scopes)?;
                Ok(Some(Auth::Bearer(token)))
            }
        }
    }

    /// The token flow: the OAuth2 POST for an identity token (falling back
    /// to the GET where the server has no POST endpoint, as BuildKit does),
    /// else the GET, with Basic credentials when there are some.
    fn fetch_token(
        &self,
        host: &Host,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<String> {
        let credential = self.credentials.credential_for(&host.name)?;
        let now = Instant::now();
        let get = |basic: Option<(&str, &str)>| {
            self.send_retrying(&host.http, &|| {
                let mut query: Vec<(&str, &str)> = Vec::new();
                if let Some(service) = service {
                    query.push(("service", service));
                }
                for scope in scopes {
                    query.push(("scope", scope));
                }
                let builder = host.http.get(realm).query(&query);
                Ok(match basic {
                    Some((user, password)) => builder.basic_auth(user, Some(password)),
                    None => builder,
                })
            })
        };
        let response = match &credential {
            Some(Credential::IdentityToken { username, token }) => {
                let scope = scopes.join(" ");
                let response = self.send_retrying(&host.http, &|| {
                    let mut form = vec![
                        ("grant_type", "refresh_token"),
                        ("refresh_token", token.as_str()),
                        ("client_id", "hoist"),
                        ("scope", scope.as_str()),
                    ];
                    if let Some(service) = service {
                        form.push(("service", service));
                    }
                    Ok(host.http.post(realm).form(&form))
                })?;
                match response.status().as_u16() {
                    400 | 401 | 404 | 405 => get(Some((username, token)))?,
                    _ => response,
                }
            }
            Some(Credential::Basic { username, password }) => get(Some((username, password)))?,
            None => get(None)?,
        };
        let what = || format!("{} token from {}", host.name, redact_url(realm));
        if !response.status().is_success() {
            let status = response.status().as_u16();
            let detail = error_detail(&read_limited(response, 64 << 10, &what())?);
            return Err(match status {
                401 => RegistryError::Unauthorized {
                    what: what(),
                    detail,
                },
                403 => RegistryError::Denied {
                    what: what(),
                    detail,
                },
                _ => RegistryError::Status {
                    url: redact_url(realm),
                    status,
                    detail,
                },
            });
        }
        let body = read_limited(response, 1 << 20, &what())?;
        let token = serde_json::from_slice::<TokenResponse>(&body)
            .ok()
            .and_then(|t| t.into_token(now))
            .ok_or_else(|| RegistryError::invalid(what(), "the response has no token"))?;
        host.tokens.put(scopes, token.clone());
        Ok(token.value)
    }
}

enum Auth {
    Basic(String, String),
    Bearer(String),
}

impl Host {
    /// The async client, built on first use with the blocking one's
    /// settings.
    fn streaming(&self) -> Result<&reqwest::Client> {
        self.streaming
            .get_or_init(|| {
                configure!(reqwest::Client::builder(), self.config)
                    .build()
                    .map_err(|err| err.to_string())
            })
            .as_ref()
            .map_err(|reason| RegistryError::Transport {
                url: self.base.clone(),
                reason: reason.clone(),
            })
    }
}

/// The runtime streamed requests run on: one thread of its own drives
/// every connection (as reqwest's blocking client does), while the
/// callers' threads make the bodies and wait for the answers.
fn runtime() -> Result<&'static tokio::runtime::Handle> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Handle, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|err| err.to_string())?;
            let handle = runtime.handle().clone();
            std::thread::Builder::new()
                .name("hoist-http".to_owned())
                .spawn(move || runtime.block_on(std::future::pending::<()>()))
                .map_err(|err| err.to_string())?;
            Ok(handle)
        })
        .as_ref()
        .map_err(|reason| RegistryError::Transport {
            url: "the http runtime".to_owned(),
            reason: reason.clone(),
        })
}

/// What a streamed request got back.
pub(crate) struct StreamedResponse {
    pub(crate) status: StatusCode,
    /// `Location`, made absolute against the request's URL.
    pub(crate) location: Option<String>,
    /// The registry's error detail, for a failure.
    pub(crate) detail: String,
    pub(crate) url: String,
}

impl StreamedResponse {
    /// An unexpected answer as an error naming `what`.
    pub(crate) fn error(&self, what: &str) -> RegistryError {
        match self.status.as_u16() {
            401 => RegistryError::Unauthorized {
                what: what.to_owned(),
                detail: self.detail.clone(),
            },
            403 => RegistryError::Denied {
                what: what.to_owned(),
                detail: self.detail.clone(),
            },
            status => RegistryError::Status {
                url: self.url.clone(),
                status,
                detail: self.detail.clone(),
            },
        }
    }
}

/// Chunks of a request body in flight between the thread that makes them
/// and the connection that sends them.
const BODY_CHUNKS: usize = 8;

/// The sending side of a [`StreamBody`]: whole chunks (a compressed block,
/// a megabyte of a file), each handed to the connection at once, so that a
/// body goes out in a few large writes rather than reqwest's blocking
/// bodies' 8 KiB ones, each a wake-up of the connection's thread.
pub(crate) struct BodySender {
    sender: Option<tokio::sync::mpsc::Sender<Bytes>>,
}

impl BodySender {
    /// Queues a chunk, waiting while the connection is behind. False once
    /// the request has gone (it failed or was answered early): the caller
    /// may stop making chunks.
    pub(crate) fn send(&mut self, chunk: Bytes) -> bool {
        if chunk.is_empty() {
            return self.sender.is_some();
        }
        let sent = self
            .sender
            .as_ref()
            .is_some_and(|sender| sender.blocking_send(chunk).is_ok());
        if !sent {
            self.sender = None;
        }
        sent
    }

    /// Ends the body (an empty chunk): a body whose sender goes away
    /// without this fails the request rather than sending a short one.
    pub(crate) fn finish(mut self) {
        if let Some(sender) = self.sender.take() {
            let _ = sender.blocking_send(Bytes::new());
        }
    }
}

/// A request body fed by a [`BodySender`] on another thread.
pub(crate) struct StreamBody {
    receiver: tokio::sync::mpsc::Receiver<Bytes>,
    length: Option<u64>,
    ended: bool,
}

/// A body of `length` bytes (`None`: unknown, sent chunked) and its sender.
pub(crate) fn body_channel(length: Option<u64>) -> (BodySender, StreamBody) {
    let (sender, receiver) = tokio::sync::mpsc::channel(BODY_CHUNKS);
    (
        BodySender {
            sender: Some(sender),
        },
        StreamBody {
            receiver,
            length,
            ended: false,
        },
    )
}

impl http_body::Body for StreamBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<http_body::Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        match this.receiver.poll_recv(cx) {
            Poll::Ready(Some(chunk)) if chunk.is_empty() => {
                this.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(chunk)) => Poll::Ready(Some(Ok(http_body::Frame::data(chunk)))),
            Poll::Ready(None) => Poll::Ready(Some(Err(std::io::Error::other(
                "the request body ended early",
            )))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self.length {
            Some(length) => http_body::SizeHint::with_exact(length),
            None => http_body::SizeHint::default(),
        }
    }
}

impl Client {
    /// Sends `method url` with a body that streams in from another thread
    /// through the async client, with the registry's credentials on its
    /// own origin only. Once: a body cannot be sent again, so a caller
    /// that needs a retry (a broken connection, a 5xx, an expired token)
    /// starts over with a new body.
    pub(crate) fn send_streamed(
        &self,
        host: &Host,
        scopes: &[String],
        method: reqwest::Method,
        url: &str,
        content_type: &str,
        body: StreamBody,
    ) -> Result<StreamedResponse> {
        let auth = if origin(url) == origin(&host.base) {
            self.authorization(host, scopes)?
        } else {
            None
        };
        let mut request = host
            .streaming()?
            .request(method, url)
            .header(reqwest::header::CONTENT_TYPE, content_type);
        if let Some(length) = body.length {
            request = request.header(reqwest::header::CONTENT_LENGTH, length);
        }
        request = match auth {
            Some(Auth::Basic(user, password)) => request.basic_auth(user, Some(password)),
            Some(Auth::Bearer(token)) => request.bearer_auth(token),
            None => request,
        };
        let request = request.body(reqwest::Body::wrap(body));
        let url = url.to_owned();
        let (done, answer) = std::sync::mpsc::sync_channel(1);
        runtime()?.spawn(async move {
            let _ = done.send(streamed(request, &url).await);
        });
        answer.recv().map_err(|_| RegistryError::Transport {
            url: "the http runtime".to_owned(),
            reason: "it stopped".to_owned(),
        })?
    }
}

/// Sends a streamed request and reads what the caller needs of the answer
/// (an error's detail: at most 64 KiB of its body).
async fn streamed(request: reqwest::RequestBuilder, url: &str) -> Result<StreamedResponse> {
    let mut response = request
        .send()
        .await
        .map_err(|err| RegistryError::transport(url, &err))?;
    let status = response.status();
    let location = header_str(response.headers().get(LOCATION))
        .and_then(|location| response.url().join(location).ok())
        .map(|url| url.to_string());
    let mut body = Vec::new();
    if !status.is_success() {
        while let Ok(Some(chunk)) = response.chunk().await {
            body.extend_from_slice(&chunk);
            if body.len() > 64 << 10 {
                break;
            }
        }
    }
    Ok(StreamedResponse {
        status,
        location,
        detail: error_detail(&body),
        url: redact_url(url),
    })
}

/// The proxies of the environment, as Go's `http.ProxyFromEnvironment`
/// (and so Docker) reads them: `HTTPS_PROXY` for https, `HTTP_PROXY` for
/// http (either in lowercase too), never for `NO_PROXY`'s hosts, and never
/// for loopback (`localhost`, `127.0.0.0/8`, `::1`), named or not.
fn env_proxies() -> Result<Vec<reqwest::Proxy>> {
    let var = |name: &str| {
        std::env::var(name)
            .or_else(|_| std::env::var(name.to_ascii_lowercase()))
            .ok()
            .filter(|value| !value.trim().is_empty())
    };
    let mut bypass = String::from("localhost,127.0.0.0/8,::1");
    if let Some(listed) = var("NO_PROXY") {
        bypass.push(',');
        bypass.push_str(&listed);
    }
    let no_proxy = reqwest::NoProxy::from_string(&bypass);
    let invalid = |name: &str, err: reqwest::Error| {
        RegistryError::invalid(
            name,
            format!("invalid proxy address: {}", err.without_url()),
        )
    };
    let mut proxies = Vec::new();
    if let Some(url) = var("HTTPS_PROXY") {
        let proxy = reqwest::Proxy::https(&url).map_err(|err| invalid("HTTPS_PROXY", err))?;
        proxies.push(proxy.no_proxy(no_proxy.clone()));
    }
    if let Some(url) = var("HTTP_PROXY") {
        let proxy = reqwest::Proxy::http(&url).map_err(|err| invalid("HTTP_PROXY", err))?;
        proxies.push(proxy.no_proxy(no_proxy));
    }
    Ok(proxies)
}

fn header_str(value: Option<&HeaderValue>) -> Option<&str> {
    value.and_then(|v| v.to_str().ok())
}

/// `Retry-After` in seconds (the HTTP-date form falls back to backoff).
fn retry_after(response: &Response) -> Option<Duration> {
    header_str(response.headers().get(RETRY_AFTER))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// `scheme://host:port` of a URL, for same-origin checks.
pub(crate) fn origin(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    Some(format!(
        "{}://{}:{}",
        parsed.scheme(),
        parsed.host_str()?,
        parsed.port_or_known_default()?
    ))
}

/// Reads a response body of at most `limit` bytes, refusing bigger ones
/// without reading them.
pub(crate) fn read_limited(response: Response, limit: u64, what: &str) -> Result<Vec<u8>> {
    if response.content_length().is_some_and(|len| len > limit) {
        return Err(RegistryError::TooLarge {
            what: what.to_owned(),
            limit,
        });
    }
    let url = response.url().to_string();
    let mut bytes = Vec::new();
    response
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| RegistryError::Transport {
            url: redact_url(&url),
            reason: err.to_string(),
        })?;
    if bytes.len() as u64 > limit {
        return Err(RegistryError::TooLarge {
            what: what.to_owned(),
            limit,
        });
    }
    Ok(bytes)
}

/// Turns an unexpected response into an error naming `what`.
pub(crate) fn status_error(response: Response, what: &str) -> RegistryError {
    let status = response.status().as_u16();
    let url = redact_url(response.url().as_str());
    // A valid token without the scope: distribution says so in the
    // challenge (`error="insufficient_scope"`), and Docker reports it as
    // denied, not as a missing login.
    let insufficient_scope = status == 401
        && header_str(response.headers().get(WWW_AUTHENTICATE))
            .is_some_and(|challenge| challenge.contains("insufficient_scope"));
    let detail = read_limited(response, 64 << 10, what)
        .map(|body| error_detail(&body))
        .unwrap_or_default();
    match status {
        401 if insufficient_scope => RegistryError::Denied {
            what: what.to_owned(),
            detail: ": requested access to the resource is denied".to_owned(),
        },
        401 => RegistryError::Unauthorized {
            what: what.to_owned(),
            // The message already says this much.
            detail: if detail == ": unauthorized: authentication required" {
                String::new()
            } else {
                detail
            },
        },
        403 => RegistryError::Denied {
            what: what.to_owned(),
            detail,
        },
        _ => RegistryError::Status {
            url,
            status,
            detail,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        for (a, b, same) in [
            ("http://127.0.0.1:5000/v2/", "http://127.0.0.1:5000", true),
            ("https://reg.example/v2/x", "https://reg.example:443", true),
            (
                "https://s3.example/blob?sig=1",
                "https://reg.example",
                false,
            ),
            ("http://reg.example/v2/", "https://reg.example", false),
            ("http://127.0.0.1:5001/v2/", "http://127.0.0.1:5000", false),
        ] {
            assert_eq!(origin(a) == origin(b), same, "{a} vs {b}");
        }
    }

    /// A one-thread HTTP/1.1 server answering with `answer(head)`; every
    /// request head it saw is kept (lowercased).
    fn serve(
        answer: impl Fn(&str) -> String + Send + 'static,
    ) -> (String, Arc<Mutex<Vec<String>>>) {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line.to_lowercase());
                }
                let response = answer(&head);
                log.lock().unwrap().push(head);
                let _ = stream.write_all(response.as_bytes());
            }
        });
        (addr, seen)
    }

    #[test]
    fn credentials_never_follow_a_redirect_to_another_host() {
        let (storage, storage_seen) = serve(|_| {
            "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nblob".to_owned()
        });
        let (registry, registry_seen) = serve(move |head| {
            if !head.contains("authorization: basic") {
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"t\"\r\n\
                 Content-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_owned()
            } else if head.starts_with("get /v2/ ") {
                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
            } else {
                format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{storage}/data?sig=s3cret\r\n\
                     Content-Length: 0\r\nConnection: close\r\n\r\n"
                )
            }
        });
        let mut credentials = crate::registry::StaticCredentials::default();
        credentials.insert(
            registry.clone(),
            Credential::Basic {
                username: "u".into(),
                password: "pw".into(),
            },
        );
        let client = Client::new(Arc::new(credentials), RegistrySettings::default());
        let host = client.host(&registry).unwrap();
        assert_eq!(
            host.base,
            format!("http://{registry}"),
            "loopback speaks plain HTTP"
        );
        let url = format!("{}/v2/r/blobs/sha256:{}", host.base, "a".repeat(64));
        let response = client.get_following(&host, &[], &url, &[]).unwrap();
        assert_eq!(response.text().unwrap(), "blob");
        let registry_seen = registry_seen.lock().unwrap();
        assert!(
            registry_seen
                .iter()
                .any(|h| h.starts_with("get /v2/r/blobs/") && h.contains("authorization: basic")),
            "the registry gets the credentials: {registry_seen:?}"
        );
        let storage_seen = storage_seen.lock().unwrap();
        assert_eq!(storage_seen.len(), 1, "{storage_seen:?}");
        assert!(
            !storage_seen[0].contains("authorization"),
            "the storage host never does: {storage_seen:?}"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
        };
        let waits: Vec<u128> = (0..5).map(|a| policy.backoff(a).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 500, 500]);
    }
}
