//! `hoist login [-u USER] [-p PASS | --password-stdin] [SERVER]`: checks
//! the credentials against the registry (`GET /v2/` with its auth flow)
//! and only then saves them in Docker's config.json or its credential
//! helper, as `docker login` does.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use hoist_store::registry::docker_config::auths_key;
use hoist_store::registry::{Credential, CredentialSource, DockerConfig, StaticCredentials};

use crate::globals::Globals;

#[derive(clap::Args)]
pub struct Args {
    /// Username
    #[arg(short, long)]
    username: Option<String>,
    /// Password (prefer --password-stdin: arguments are visible to every
    /// user of the machine)
    #[arg(short, long, conflicts_with = "password_stdin")]
    password: Option<String>,
    /// Take the password from stdin
    #[arg(long)]
    password_stdin: bool,
    /// The registry (default: Docker Hub)
    #[arg(value_name = "SERVER")]
    server: Option<String>,
}

/// The password never shows, not even in a debug dump of the command line.
impl std::fmt::Debug for Args {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Args")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_stdin", &self.password_stdin)
            .field("server", &self.server)
            .finish()
    }
}

pub fn run(args: Args, globals: &Globals) -> anyhow::Result<ExitCode> {
    let host = registry_host(args.server.as_deref().unwrap_or("docker.io"))?;
    let config = DockerConfig::from_env()?;
    if args.password.is_some() {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
    }
    if args.password_stdin && args.username.is_none() {
        bail!("Must provide --username with --password-stdin");
    }

    // No new credentials given: try the stored ones first, as Docker does.
    if args.username.is_none()
        && args.password.is_none()
        && !args.password_stdin
        && let Some(stored) = config.credential_for(&host)?
        && verify(globals, &host, &stored).is_ok()
    {
        let user = stored.username();
        if user.is_empty() {
            eprintln!("Authenticating with existing credentials...");
        } else {
            eprintln!("Authenticating with existing credentials... [Username: {user}]");
        }
        println!("Login Succeeded");
        return Ok(ExitCode::SUCCESS);
    }

    let username = match args.username {
        Some(username) => username,
        None => prompt("Username: ", false)?,
    };
    let username = username.trim().to_owned();
    if username.is_empty() {
        bail!("Username is required");
    }
    let password = if args.password_stdin {
        let mut password = String::new();
        std::io::stdin()
            .read_to_string(&mut password)
            .context("reading the password from stdin")?;
        password.trim_end_matches(['\n', '\r']).to_owned()
    } else {
        match args.password {
            Some(password) => password,
            None => prompt("Password: ", true)?,
        }
    };
    if password.is_empty() {
        bail!("Password is required");
    }
    let credential = Credential::Basic { username, password };
    // A token server that issues refresh tokens gets the identity token
    // saved instead of the password, as Docker does.
    let saved = match verify(globals, &host, &credential)? {
        Some(token) => Credential::IdentityToken {
            username: credential.username().to_owned(),
            token,
        },
        None => credential,
    };
    config
        .store(&host, &saved)
        .with_context(|| format!("saving the credentials for {}", auths_key(&host)))?;
    if config.helper(&host)?.is_none() {
        eprintln!(
            "\nWARNING! Your credentials are stored unencrypted in '{}'.\n\
             Configure a credential helper to remove this warning. See\n\
             https://docs.docker.com/go/credential-store/\n",
            config.path().display()
        );
    }
    println!("Login Succeeded");
    Ok(ExitCode::SUCCESS)
}

/// `GET /v2/` with `credential` and nothing else: a wrong password fails
/// here, before anything is written. Returns the identity token a token
/// server issued for it, if any.
fn verify(
    globals: &Globals,
    host: &str,
    credential: &Credential,
) -> anyhow::Result<Option<String>> {
    let mut credentials = StaticCredentials::default();
    credentials.insert(host, credential.clone());
    let credentials: Arc<dyn CredentialSource> = Arc::new(credentials);
    let client = hoist_store::registry::Client::new(credentials, globals.registry_settings()?);
    client
        .check_login(host)
        .with_context(|| format!("logging in to {}", auths_key(host)))
}

/// The registry host a `login`/`logout` argument names, as references
/// name it: `docker.io` for Docker Hub under any of its names,
/// `localhost:5000` for `http://localhost:5000/v2/`.
pub fn registry_host(server: &str) -> anyhow::Result<String> {
    let trimmed = server.trim();
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"))
        .unwrap_or(trimmed);
    let host = rest.split('/').next().unwrap_or(rest).to_ascii_lowercase();
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_'));
    if !valid {
        bail!("invalid registry {server:?}: expected a host[:port] such as registry.example:5000");
    }
    Ok(match host.as_str() {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => "docker.io".to_owned(),
        _ => host,
    })
}

/// Reads one line from the terminal, without echo for passwords.
fn prompt(label: &str, secret: bool) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("Cannot perform an interactive login from a non TTY device");
    }
    eprint!("{label}");
    std::io::stderr().flush()?;
    let saved = if secret {
        let saved = rustix::termios::tcgetattr(&stdin).context("reading terminal settings")?;
        let mut quiet = saved.clone();
        quiet.local_modes.remove(rustix::termios::LocalModes::ECHO);
        rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &quiet)
            .context("turning off terminal echo")?;
        Some(saved)
    } else {
        None
    };
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(saved) = saved {
        let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &saved);
        eprintln!();
    }
    read.context("reading from the terminal")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let cli = <Cli as clap::Parser>::parse_from(["login", "-u", "me", "-p", "s3cret", "reg"]);
        let debug = format!("{:?}", cli.args);
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(
            debug.contains("<redacted>") && debug.contains("me"),
            "{debug}"
        );
    }

    #[test]
    fn registry_hosts() {
        for (server, want) in [
            ("docker.io", Some("docker.io")),
            ("https://index.docker.io/v1/", Some("docker.io")),
            ("registry-1.docker.io", Some("docker.io")),
            ("localhost:5000", Some("localhost:5000")),
            ("http://127.0.0.1:5000/v2/", Some("127.0.0.1:5000")),
            ("Reg.Example", Some("reg.example")),
            ("", None),
            ("bad host", None),
        ] {
            assert_eq!(registry_host(server).ok().as_deref(), want, "{server:?}");
        }
    }
}
