//! Authentication: `WWW-Authenticate` challenges and the token flow
//! (<https://distribution.github.io/distribution/spec/auth/token/>), as
//! BuildKit does it: GET the token (with Basic credentials when there are
//! some); for an identity token, the OAuth2 POST with the `refresh_token`
//! grant, falling back to the GET when the server has no POST endpoint.
//! Tokens are cached per scope set and renewed before they expire.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How a registry asked to be authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header value; Bearer wins over Basic when a
/// server offers both. `None` for schemes hoist does not speak.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let challenges = http_auth::parse_challenges(header).ok()?;
    let mut basic = false;
    for challenge in &challenges {
        if challenge.scheme.eq_ignore_ascii_case("bearer") {
            let param = |name: &str| {
                challenge
                    .params
                    .iter()
                    .find(|(key, _)| key.eq_ignore_ascii_case(name))
                    .map(|(_, value)| value.to_unescaped())
            };
            let realm = param("realm")?;
            return Some(Challenge::Bearer {
                realm,
                service: param("service"),
            });
        }
        basic |= challenge.scheme.eq_ignore_ascii_case("basic");
    }
    basic.then_some(Challenge::Basic)
}

/// The body of a token response.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub access_token: String,
    #[serde(default)]
    pub expires_in: u64,
}

impl TokenResponse {
    pub(crate) fn into_token(self, now: Instant) -> Option<Token> {
        let value = if self.access_token.is_empty() {
            self.token
        } else {
            self.access_token
        };
        if value.is_empty() {
            return None;
        }
        // The spec's default and minimum lifetime is 60 seconds.
        let lifetime = Duration::from_secs(self.expires_in.max(60));
        Some(Token {
            value,
            // Renew once 90% of the lifetime has passed.
            renew_at: now + lifetime.mul_f64(0.9),
        })
    }
}

/// A bearer token; its value never reaches `Debug`.
#[derive(Clone)]
pub(crate) struct Token {
    pub value: String,
    pub renew_at: Instant,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token").finish_non_exhaustive()
    }
}

/// Tokens of one registry host, per scope set.
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    tokens: Mutex<HashMap<String, Token>>,
}

impl TokenCache {
    /// The key of a scope set: sorted, deduplicated, space-separated.
    pub(crate) fn key(scopes: &[String]) -> String {
        let mut sorted: Vec<&str> = scopes.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        sorted.dedup();
        sorted.join(" ")
    }

    pub(crate) fn get(&self, scopes: &[String], now: Instant) -> Option<Token> {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens
            .get(&Self::key(scopes))
            .filter(|t| t.renew_at > now)
            .cloned()
    }

    pub(crate) fn put(&self, scopes: &[String], token: Token) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.insert(Self::key(scopes), token);
    }

    /// Forgets the token of a scope set (the registry refused it).
    pub(crate) fn invalidate(&self, scopes: &[String]) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.remove(&Self::key(scopes));
    }
}

/// `repository:NAME:ACTIONS`, the scope of a repository operation.
pub fn repository_scope(path: &str, actions: &str) -> String {
    format!("repository:{path}:{actions}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let cases: &[(&str, Option<Challenge>)] = &[
            (
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
                Some(Challenge::Bearer {
                    realm: "https://auth.docker.io/token".into(),
                    service: Some("registry.docker.io".into()),
                }),
            ),
            (r#"Basic realm="hoist-test""#, Some(Challenge::Basic)),
            (
                r#"Basic realm="x", Bearer realm="http://127.0.0.1:1/t""#,
                Some(Challenge::Bearer {
                    realm: "http://127.0.0.1:1/t".into(),
                    service: None,
                }),
            ),
            (r#"Bearer service="no-realm""#, None),
            (r#"Negotiate"#, None),
            ("", None),
        ];
        for (header, want) in cases {
            assert_eq!(&parse_challenge(header), want, "{header}");
        }
    }

    #[test]
    fn token_lifetimes_and_cache_keys() {
        let now = Instant::now();
        let token = TokenResponse {
            token: "s3cret-token".into(),
            access_token: String::new(),
            expires_in: 300,
        }
        .into_token(now)
        .unwrap();
        assert_eq!(token.renew_at, now + Duration::from_secs(270));
        let short = TokenResponse {
            token: String::new(),
            access_token: "a".into(),
            expires_in: 5,
        }
        .into_token(now)
        .unwrap();
        assert_eq!(short.value, "a");
        assert_eq!(short.renew_at, now + Duration::from_secs(54));
        let cache = TokenCache::default();
        let scopes = vec![
            "repository:b:pull".to_owned(),
            "repository:a:pull,push".to_owned(),
        ];
        cache.put(&scopes, token);
        let reversed: Vec<String> = scopes.iter().rev().cloned().collect();
        assert!(cache.get(&reversed, now).is_some(), "order does not matter");
        assert!(
            cache
                .get(&reversed, now + Duration::from_secs(271))
                .is_none(),
            "renewed before it expires"
        );
        let shown = format!("{:?}", cache.get(&scopes, now));
        assert!(!shown.contains("s3cret"), "{shown}");
        cache.invalidate(&scopes);
        assert!(cache.get(&scopes, now).is_none());
    }
}
