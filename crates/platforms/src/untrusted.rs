//! Fetching URLs that came in a payload (a LINE image's external
//! `originalContentUrl`, a Facebook attachment URL).
//!
//! Whoever can sign a webhook chooses those URLs, and an organization's
//! admin chooses its LINE channel secret, so a tenant could aim the server
//! at anything it can reach: a cloud metadata address, a database, the
//! server's own `/metrics`. A payload URL is therefore fetched only:
//! - over https (plain http only for the one origin configured for tests);
//! - to public addresses: loopback, private, link-local, unique-local,
//!   shared (CGNAT), multicast, broadcast, documentation and unspecified
//!   addresses are refused, both when the URL names an address and after
//!   DNS resolution (the connection is made to the checked addresses, so a
//!   second lookup cannot swap in another);
//! - following at most [`MAX_REDIRECTS`] redirects, each hop checked again;
//! - at most `max_bytes`, within the client's time limit.
//!
//! The platforms' API base URLs from configuration do not go through here:
//! they are trusted (tests point them at local stand-ins).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::client::{read_limited, Download, PlatformError};
pub use crate::client::{Refused, MAX_REDIRECTS};

/// Whether `ip` is an address on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_unspecified()
        // 0.0.0.0/8 "this network", 100.64.0.0/10 shared (CGNAT),
        // 192.0.0.0/24 protocol assignments, 198.18.0.0/15 benchmarking,
        // 240.0.0.0/4 reserved.
        || a == 0
        || (a == 100 && (b & 0xc0) == 64)
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b & 0xfe) == 18)
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_unique_local()
        || ip.is_unicast_link_local()
        // Documentation (2001:db8::/32), discard-only (100::/64),
        // NAT64 (64:ff9b::/96, which can reach IPv4 space).
        || (first == 0x2001 && ip.segments()[1] == 0x0db8)
        || (first == 0x0100 && ip.segments()[1..4] == [0, 0, 0])
        || (first == 0x0064 && ip.segments()[1] == 0xff9b))
}

/// Resolves host names to their public addresses only.
struct PublicResolver;

impl reqwest::dns::Resolve for PublicResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let public: Vec<SocketAddr> = found.filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err(Box::new(Refused::Host { host }) as Box<_>);
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The host the resolver refused, if that is why `error` happened.
fn refusal(error: &reqwest::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if let Some(Refused::Host { host }) = cause.downcast_ref::<Refused>() {
            return Some(host.clone());
        }
        source = cause.source();
    }
    None
}

/// A client for payload URLs: public addresses only, no automatic redirects.
#[derive(Clone)]
pub struct UntrustedFetcher {
    client: reqwest::Client,
    /// The one origin (`scheme://host:port`) fetched without these checks:
    /// a local stand-in in tests. It comes from configuration, never from
    /// a payload.
    trusted_origin: Option<String>,
}

impl UntrustedFetcher {
    pub fn new(timeout: Duration, trusted_origin: Option<String>) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(crate::client::CONNECT_TIMEOUT.min(timeout))
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(PublicResolver))
            .user_agent(concat!("omnibox/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            trusted_origin: trusted_origin.map(|o| o.trim_end_matches('/').to_owned()),
        })
    }

    fn trusted(&self, url: &reqwest::Url) -> bool {
        self.trusted_origin
            .as_deref()
            .is_some_and(|origin| url.origin().ascii_serialization() == origin)
    }

    /// Checks what can be checked before connecting.
    fn check(&self, url: &reqwest::Url) -> Result<(), Refused> {
        if self.trusted(url) {
            return Ok(());
        }
        if url.scheme() != "https" {
            return Err(Refused::Scheme(url.scheme().to_owned()));
        }
        let host = url
            .host_str()
            .ok_or_else(|| Refused::Malformed(url.to_string()))?;
        // An address in the URL is never looked up: check it here.
        match host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            Ok(ip) if !is_public(ip) => Err(Refused::Address(ip)),
            _ => Ok(()),
        }
    }

    /// Downloads `url`, at most `max_bytes`.
    pub async fn download(&self, url: &str, max_bytes: usize) -> Result<Download, PlatformError> {
        let mut url = reqwest::Url::parse(url)
            .map_err(|e| PlatformError::Refused(Refused::Malformed(e.to_string())))?;
        for _ in 0..=MAX_REDIRECTS {
            self.check(&url).map_err(PlatformError::Refused)?;
            let response = match self.client.get(url.clone()).send().await {
                Ok(response) => response,
                Err(error) => {
                    return Err(match refusal(&error) {
                        Some(host) => PlatformError::Refused(Refused::Host { host }),
                        None => PlatformError::unreachable(error),
                    })
                }
            };
            let status = response.status();
            if status.is_redirection() {
                let next = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| url.join(l).ok())
                    .ok_or_else(|| PlatformError::UnexpectedAnswer {
                        status: status.as_u16(),
                        reason: "a redirect without a usable Location".into(),
                    })?;
                url = next;
                continue;
            }
            if !status.is_success() {
                return Err(PlatformError::UnexpectedAnswer {
                    status: status.as_u16(),
                    reason: "the media URL did not answer with the file (expired?)".into(),
                });
            }
            return read_limited(response, max_bytes).await;
        }
        Err(PlatformError::Refused(Refused::Redirects))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_pass() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            let ip: IpAddr = private.parse().expect("address");
            assert!(!is_public(ip), "{private}");
        }
        for public in [
            "93.184.216.34",
            "157.240.1.35",
            "2a03:2880:f10c:83:face:b00c:0:25de",
        ] {
            let ip: IpAddr = public.parse().expect("address");
            assert!(is_public(ip), "{public}");
        }
    }

    #[test]
    fn only_https_and_public_literals_are_tried() {
        let fetcher =
            UntrustedFetcher::new(Duration::from_secs(1), Some("http://127.0.0.1:9".into()))
                .expect("client");
        let check = |url: &str| fetcher.check(&reqwest::Url::parse(url).expect("url"));
        assert!(matches!(
            check("http://example.com/a.png"),
            Err(Refused::Scheme(_))
        ));
        assert!(matches!(
            check("file:///etc/passwd"),
            Err(Refused::Scheme(_))
        ));
        assert!(matches!(
            check("https://127.0.0.1/x"),
            Err(Refused::Address(_))
        ));
        assert!(matches!(
            check("https://[::1]:8080/x"),
            Err(Refused::Address(_))
        ));
        assert!(matches!(
            check("https://169.254.169.254/latest"),
            Err(Refused::Address(_))
        ));
        assert!(check("https://scontent.xx.fbcdn.net/v/a.jpg").is_ok());
        assert!(
            check("http://127.0.0.1:9/cdn/a.png").is_ok(),
            "the configured test origin"
        );
        assert!(matches!(
            check("http://127.0.0.1:10/cdn/a.png"),
            Err(Refused::Scheme(_))
        ));
    }
}
