//! What `hoist login` asks of a registry: `GET /v2/` with the registry's
//! auth flow and the credential being saved, as `docker login` checks it.
//! A wrong password fails here, before anything is written.
//!
//! Against a token server the check asks for an offline token
//! (`offline_token=true`, distribution's `docs/spec/auth/oauth.md`), as
//! Docker does: when the server returns a refresh token, that identity
//! token is saved instead of the password.

use reqwest::StatusCode;

use crate::registry::auth::Challenge;
use crate::registry::client::{Client, read_limited, status_error};
use crate::registry::error::{error_detail, redact_url};
use crate::registry::{Credential, RegistryError};

/// The client id hoist gives token servers.
const CLIENT_ID: &str = "hoist";

/// The token server's answer to an offline-token request.
#[derive(serde::Deserialize)]
struct OfflineToken {
    #[serde(default)]
    token: String,
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    refresh_token: String,
}

impl Client {
    /// Authenticates to registry `domain` (`docker.io`, `localhost:5000`)
    /// with the credential this client's source has for it: Basic on
    /// `/v2/`, or a token from the registry's token server. Returns the
    /// identity token the token server issued, if it issued one.
    pub fn check_login(&self, domain: &str) -> Result<Option<String>, RegistryError> {
        let host = self.host(domain)?;
        let what = format!("{domain}/v2/");
        let offline = match (host.challenge(), self.credentials().credential_for(domain)?) {
            (
                Some(Challenge::Bearer { realm, service }),
                Some(Credential::Basic { username, password }),
            ) => {
                Some(self.offline_token(&host, &realm, service.as_deref(), &username, &password)?)
            }
            _ => None,
        };
        let response = match &offline {
            Some(token) => {
                let url = format!("{}/v2/", host.base);
                self.send_retrying(host.http(), &|| {
                    Ok(host.http().get(&url).bearer_auth(&token.0))
                })?
            }
            None => self.request(
                &host,
                &[],
                &|http, base| Ok(http.get(format!("{base}/v2/"))),
            )?,
        };
        // Only 200 proves the credential, as Docker's login has it: a pull
        // tolerates a 404 on /v2/, a login does not.
        if response.status() == StatusCode::OK {
            return Ok(offline.and_then(|(_, refresh)| refresh));
        }
        Err(status_error(response, &what))
    }

    /// `GET realm?service=S&offline_token=true&client_id=hoist&account=U`
    /// with Basic auth: an access token, and a refresh token when the
    /// server issues them.
    fn offline_token(
        &self,
        host: &crate::registry::client::Host,
        realm: &str,
        service: Option<&str>,
        username: &str,
        password: &str,
    ) -> Result<(String, Option<String>), RegistryError> {
        let what = format!("{} token from {}", host.name, redact_url(realm));
        let response = self.send_retrying(host.http(), &|| {
            let mut query = vec![
                ("offline_token", "true"),
                ("client_id", CLIENT_ID),
                ("account", username),
            ];
            if let Some(service) = service {
                query.push(("service", service));
            }
            Ok(host
                .http()
                .get(realm)
                .query(&query)
                .basic_auth(username, Some(password)))
        })?;
        let status = response.status();
        if !status.is_success() {
            let detail = error_detail(&read_limited(response, 64 << 10, &what)?);
            return Err(match status {
                StatusCode::UNAUTHORIZED => RegistryError::Unauthorized { what, detail },
                StatusCode::FORBIDDEN => RegistryError::Denied { what, detail },
                status => RegistryError::Status {
                    url: redact_url(realm),
                    status: status.as_u16(),
                    detail,
                },
            });
        }
        let body = read_limited(response, 1 << 20, &what)?;
        let answer: OfflineToken = serde_json::from_slice(&body)
            .map_err(|_| RegistryError::invalid(what.clone(), "the response is not a token"))?;
        let access = if answer.access_token.is_empty() {
            answer.token
        } else {
            answer.access_token
        };
        if access.is_empty() {
            return Err(RegistryError::invalid(what, "the response has no token"));
        }
        let refresh = Some(answer.refresh_token).filter(|t| !t.is_empty());
        Ok((access, refresh))
    }
}
