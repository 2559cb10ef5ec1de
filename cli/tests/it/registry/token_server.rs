//! A token server for the registry's `auth: token:` mode, as Docker Hub and
//! most private registries run one (distribution's `docs/spec/auth/token.md`
//! and `oauth.md`):
//! - `GET /token?service=S&scope=repository:NAME:pull,push` with Basic auth
//!   (or none, for anonymous access), and `offline_token=true` to also get a
//!   refresh token;
//! - `POST /token` with a form: `grant_type=refresh_token` (an identity
//!   token) or `grant_type=password`.
//!
//! Tokens are ES256 JWTs whose `x5c` header carries a self-signed
//! certificate made at start-up; the registry trusts it through
//! `rootcertbundle`, as distribution 2.8 verifies `x5c` chains. Each user
//! has grants per repository and gets only the requested actions it is
//! granted. Every request is counted, so tests can assert which flow the
//! client used.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::harness::{RegistryAuth, RegistryOptions};
use super::http::{Request, Server, respond};

pub const SERVICE: &str = "hoist-test-registry";
pub const ISSUER: &str = "hoist-test-issuer";

/// A user and what it may do: `(repository, actions)`; a repository of
/// `*` means every repository.
#[derive(Clone, Debug)]
pub struct TokenUser {
    pub name: String,
    pub password: String,
    pub grants: Vec<(String, Vec<String>)>,
}

impl TokenUser {
    /// A user granted `actions` (`"pull"`, `"pull,push"`) on every
    /// repository.
    pub fn everywhere(name: &str, password: &str, actions: &str) -> TokenUser {
        TokenUser {
            name: name.to_owned(),
            password: password.to_owned(),
            grants: vec![(
                "*".to_owned(),
                actions.split(',').map(str::to_owned).collect(),
            )],
        }
    }
}

/// How many requests of each kind the server answered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenCounts {
    /// `GET` with Basic auth that succeeded.
    pub basic_get: usize,
    /// `GET` without credentials.
    pub anonymous_get: usize,
    /// `POST grant_type=refresh_token` that succeeded.
    pub refresh_post: usize,
    /// `POST grant_type=password` that succeeded.
    pub password_post: usize,
    /// Requests refused (bad credentials, unknown refresh token, bad form).
    pub refused: usize,
    /// Every scope requested, in order (`repository:a/b:pull,push`).
    pub scopes: Vec<String>,
}

struct State {
    users: Vec<TokenUser>,
    key: jsonwebtoken::EncodingKey,
    cert_der_base64: String,
    refresh_tokens: Mutex<BTreeMap<String, String>>,
    counts: Mutex<TokenCounts>,
}

/// A running token server; stopped on drop.
pub struct TokenServer {
    server: Server,
    state: Arc<State>,
    dir: tempfile::TempDir,
}

impl TokenServer {
    pub fn start(users: Vec<TokenUser>) -> TokenServer {
        let dir = tempfile::Builder::new()
            .prefix("hoist-token-")
            .tempdir()
            .unwrap();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, ISSUER);
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.path().join("root.pem"), cert.pem()).unwrap();
        let state = Arc::new(State {
            users,
            key: jsonwebtoken::EncodingKey::from_ec_der(&key.serialize_der()),
            cert_der_base64: BASE64.encode(cert.der()),
            refresh_tokens: Mutex::new(BTreeMap::new()),
            counts: Mutex::new(TokenCounts::default()),
        });
        let serving = state.clone();
        let server = Server::start(move |request, stream| serving.handle(request, stream));
        TokenServer { server, state, dir }
    }

    /// `http://127.0.0.1:PORT/token`.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.server.host())
    }

    /// Options for a [`super::harness::TestRegistry`] that trusts this
    /// server's tokens.
    pub fn registry_options(&self) -> RegistryOptions {
        RegistryOptions {
            auth: RegistryAuth::Raw(format!(
                "  token:\n    realm: {realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {bundle}\n",
                realm = self.realm(),
                bundle = self.dir.path().join("root.pem").display(),
            )),
            ..RegistryOptions::default()
        }
    }

    /// A refresh token for `user`, as a login with `offline_token=true`
    /// would have returned: what config.json keeps as `identitytoken`.
    pub fn issue_refresh_token(&self, user: &str) -> String {
        self.state.new_refresh_token(user)
    }

    pub fn counts(&self) -> TokenCounts {
        self.state.counts.lock().unwrap().clone()
    }
}

impl State {
    fn handle(&self, request: Request, mut stream: TcpStream) {
        let answer = if request.path() != "/token" {
            Err((404, "no such endpoint".to_owned()))
        } else if request.method == "GET" {
            self.get(&request)
        } else if request.method == "POST" {
            self.post(&request)
        } else {
            Err((405, "GET or POST".to_owned()))
        };
        let _ = match answer {
            Ok(body) => respond(
                &mut stream,
                200,
                &[("Content-Type", "application/json")],
                body.to_string().as_bytes(),
            ),
            Err((status, message)) => {
                self.counts.lock().unwrap().refused += 1;
                let body = serde_json::json!({
                    "errors": [{"code": "UNAUTHORIZED", "message": message}],
                });
                respond(
                    &mut stream,
                    status,
                    &[("Content-Type", "application/json")],
                    body.to_string().as_bytes(),
                )
            }
        };
    }

    fn get(&self, request: &Request) -> Result<serde_json::Value, (u16, String)> {
        let query = request.query();
        let scopes: Vec<String> = query
            .iter()
            .filter(|(k, _)| k == "scope")
            .flat_map(|(_, v)| v.split(' ').map(str::to_owned).collect::<Vec<_>>())
            .collect();
        let offline = query
            .iter()
            .any(|(k, v)| k == "offline_token" && v == "true");
        let user = match request.header("authorization") {
            None => None,
            Some(header) => {
                let (name, password) = decode_basic(header)
                    .ok_or_else(|| (400, "authorization is not Basic".to_owned()))?;
                Some(self.check_password(&name, &password)?)
            }
        };
        let mut body = self.token_body(user.as_ref(), &scopes);
        {
            let mut counts = self.counts.lock().unwrap();
            counts.scopes.extend(scopes.iter().cloned());
            match user {
                Some(_) => counts.basic_get += 1,
                None => counts.anonymous_get += 1,
            }
        }
        if let (true, Some(user)) = (offline, user) {
            body["refresh_token"] = self.new_refresh_token(&user.name).into();
        }
        Ok(body)
    }

    fn post(&self, request: &Request) -> Result<serde_json::Value, (u16, String)> {
        let form: Vec<(String, String)> = url::form_urlencoded::parse(&request.body)
            .into_owned()
            .collect();
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let scopes: Vec<String> = field("scope")
            .unwrap_or("")
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let (user, refresh) = match field("grant_type") {
            Some("refresh_token") => {
                let token = field("refresh_token").unwrap_or("");
                let name = self
                    .refresh_tokens
                    .lock()
                    .unwrap()
                    .get(token)
                    .cloned()
                    .ok_or_else(|| (401, "unknown refresh token".to_owned()))?;
                let user = self
                    .user(&name)
                    .ok_or_else(|| (401, "no such user".to_owned()))?;
                (user, token.to_owned())
            }
            Some("password") => {
                let user = self.check_password(
                    field("username").unwrap_or(""),
                    field("password").unwrap_or(""),
                )?;
                let refresh = self.new_refresh_token(&user.name);
                (user, refresh)
            }
            other => return Err((400, format!("unsupported grant_type {other:?}"))),
        };
        let mut body = self.token_body(Some(&user), &scopes);
        body["refresh_token"] = refresh.into();
        body["scope"] = scopes.join(" ").into();
        let mut counts = self.counts.lock().unwrap();
        counts.scopes.extend(scopes.iter().cloned());
        if field("grant_type") == Some("refresh_token") {
            counts.refresh_post += 1;
        } else {
            counts.password_post += 1;
        }
        Ok(body)
    }

    fn user(&self, name: &str) -> Option<TokenUser> {
        self.users.iter().find(|u| u.name == name).cloned()
    }

    fn check_password(&self, name: &str, password: &str) -> Result<TokenUser, (u16, String)> {
        self.user(name)
            .filter(|user| user.password == password)
            .ok_or_else(|| (401, "invalid username or password".to_owned()))
    }

    fn new_refresh_token(&self, user: &str) -> String {
        let mut tokens = self.refresh_tokens.lock().unwrap();
        let token = format!("refresh-{user}-{}-{}", tokens.len(), std::process::id());
        tokens.insert(token.clone(), user.to_owned());
        token
    }

    /// A signed token granting `user` what it may of `scopes`.
    fn token_body(&self, user: Option<&TokenUser>, scopes: &[String]) -> serde_json::Value {
        let mut access = Vec::new();
        for scope in scopes {
            let mut parts = scope.splitn(3, ':');
            let (Some(kind), Some(name), Some(actions)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let granted: Vec<&str> = actions
                .split(',')
                .filter(|action| {
                    user.is_some_and(|user| {
                        user.grants.iter().any(|(repo, allowed)| {
                            kind == "repository"
                                && (repo == "*" || repo == name)
                                && allowed.iter().any(|a| a == action || a == "*")
                        })
                    })
                })
                .collect();
            if !granted.is_empty() {
                access.push(serde_json::json!({
                    "type": kind, "name": name, "actions": granted,
                }));
            }
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = serde_json::json!({
            "iss": ISSUER,
            "sub": user.map_or("", |u| u.name.as_str()),
            "aud": SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": format!("{now}-{}", access.len()),
            "access": access,
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.x5c = Some(vec![self.cert_der_base64.clone()]);
        let token = jsonwebtoken::encode(&header, &claims, &self.key).unwrap();
        serde_json::json!({
            "token": token,
            "access_token": token,
            "expires_in": 300,
            "issued_at": chrono::DateTime::from_timestamp(now as i64, 0)
                .unwrap()
                .to_rfc3339(),
        })
    }
}

/// `Basic base64(user:password)` → `(user, password)`.
fn decode_basic(header: &str) -> Option<(String, String)> {
    let encoded = header.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(BASE64.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}
