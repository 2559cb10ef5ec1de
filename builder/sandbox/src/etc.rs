//! The generated /etc/hosts and /etc/resolv.conf, as BuildKit writes them.

use crate::spec::Network;

/// Docker's fallback resolvers when the host only has loopback ones.
const DEFAULT_NAMESERVERS: &str = "nameserver 8.8.8.8\nnameserver 8.8.4.4\n";

/// BuildKit's hosts file: localhost, with the sandbox's hostname on 127.0.0.1.
pub fn hosts(hostname: &str) -> String {
    format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n")
}

/// The host's resolv.conf, as is on the host network. In a new network
/// namespace loopback resolvers are unreachable, so they are dropped (and
/// Docker's public fallback used when none is left), as Docker does.
pub fn resolv_conf(host: &str, network: Network) -> String {
    if network == Network::Host {
        return host.to_owned();
    }
    let mut out = String::new();
    let mut nameservers = 0;
    for line in host.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("nameserver") {
            let addr = words.next().unwrap_or("");
            if addr.starts_with("127.") || addr == "::1" {
                continue;
            }
            nameservers += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    if nameservers == 0 {
        out.push_str(DEFAULT_NAMESERVERS);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_cases() {
        let cases = [
            (
                "nameserver 127.0.0.53\n",
                Network::Host,
                "nameserver 127.0.0.53\n",
            ),
            (
                "nameserver 127.0.0.53\nsearch x\n",
                Network::None,
                "search x\n", /* + fallback */
            ),
            (
                "nameserver 10.0.0.1\nnameserver ::1\n",
                Network::None,
                "nameserver 10.0.0.1\n",
            ),
            ("", Network::None, ""),
        ];
        for (host, net, want_prefix) in cases {
            let got = resolv_conf(host, net);
            assert!(
                got.starts_with(want_prefix),
                "case {host:?} {net:?}: got {got:?}"
            );
            let has_ns = got.lines().any(|l| l.starts_with("nameserver"));
            assert!(
                has_ns || host.is_empty() && net == Network::Host,
                "case {host:?}: {got:?}"
            );
        }
    }

    #[test]
    fn hosts_names_the_hostname() {
        assert!(hosts("box").starts_with("127.0.0.1\tlocalhost box\n"));
    }
}
