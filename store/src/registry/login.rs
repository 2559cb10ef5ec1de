//! What `hoist login` asks of a registry: `GET /v2/` with the registry's
//! auth flow and the credential being saved, as `docker login` checks it.
//! A wrong password fails here, before anything is written.

use reqwest::StatusCode;

use crate::registry::RegistryError;
use crate::registry::client::{Client, read_limited};
use crate::registry::error::error_detail;

impl Client {
    /// Authenticates to registry `domain` (`docker.io`, `localhost:5000`)
    /// with the credential this client's source has for it: Basic on
    /// `/v2/`, or a token with no scope from the registry's token server.
    pub fn check_login(&self, domain: &str) -> Result<(), RegistryError> {
        let host = self.host(domain)?;
        let response =
            self.request(
                &host,
                &[],
                &|http, base| Ok(http.get(format!("{base}/v2/"))),
            )?;
        let status = response.status();
        if status.is_success() || status == StatusCode::NOT_FOUND {
            return Ok(());
        }
        let what = format!("{domain}/v2/");
        let detail = error_detail(&read_limited(response, 64 << 10, &what)?);
        Err(match status {
            StatusCode::UNAUTHORIZED => RegistryError::Unauthorized { what, detail },
            StatusCode::FORBIDDEN => RegistryError::Denied { what, detail },
            status => RegistryError::Status {
                url: what,
                status: status.as_u16(),
                detail,
            },
        })
    }
}
