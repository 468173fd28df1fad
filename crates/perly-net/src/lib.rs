//! Perly's way out to vendors. Every request Perly makes to Slack, Discord
//! or Salesforce goes through an [`Outbound`]: a reqwest client built so
//! that a URL an admin typed or a vendor answered cannot make Perly reach
//! into the network it runs in.
//!
//! - Hosts given as IP literals are judged by [`Outbound::check`] before a
//!   request is built ([`Outbound::request`] does it for you).
//! - Names are resolved by [`resolver::GuardedResolver`], which drops
//!   loopback, private, link-local, CGNAT, multicast and other non-public
//!   addresses ([`address`]) at connect time, so DNS rebinding cannot get
//!   around the check.
//! - Redirects are never followed and proxies from the environment are not
//!   used (a proxy would resolve names itself).
//! - Bodies are read with [`body::read_capped`], up to a limit the caller
//!   picks per kind of answer.
//!
//! Local stand-ins and tests run on 127.0.0.1, so the whole check can be
//! turned off with [`Policy::allow_private_networks`]; it is never on by
//! default (`PERLY_OUTBOUND__ALLOW_PRIVATE_NETWORKS`).

pub mod address;
pub mod body;
pub mod resolver;

use std::net::IpAddr;
use std::sync::Arc;

pub use body::{read_capped, read_text_capped, BodyError};
use reqwest::{ClientBuilder, Method, RequestBuilder};
use url::{Host, Url};

/// What outbound connections may reach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// Connect to loopback, private and link-local addresses too (local
    /// stand-ins, tests, the demo). Off unless the operator turns it on.
    pub allow_private_networks: bool,
}

impl Policy {
    /// Everything allowed: for tests and local stand-ins only.
    pub const LOCAL: Policy = Policy {
        allow_private_networks: true,
    };
}

/// Why Perly will not connect somewhere.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("Perly only connects over https or http, not `{0}:`")]
    Scheme(String),
    #[error("the URL has no host")]
    NoHost,
    #[error("Perly does not send a user name or password inside a URL")]
    Userinfo,
    #[error("{host} is a {kind} address; Perly does not connect to private networks")]
    Address { host: String, kind: &'static str },
    #[error("{host} resolves to a {kind} address; Perly does not connect to private networks")]
    Resolved { host: String, kind: &'static str },
    #[error("{host} could not be resolved ({reason})")]
    Lookup { host: String, reason: String },
}

/// A reqwest client that only reaches what its [`Policy`] allows; cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct Outbound {
    client: reqwest::Client,
    policy: Policy,
}

impl Outbound {
    /// A client with the guarded resolver, no redirects and no proxy;
    /// `configure` adds timeouts, pool sizes and the like (and must not
    /// undo those three).
    pub fn new(policy: Policy, configure: impl FnOnce(ClientBuilder) -> ClientBuilder) -> Result<Self, reqwest::Error> {
        let builder = configure(reqwest::Client::builder());
        let client = builder
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(resolver::GuardedResolver::new(policy)))
            .build()?;
        Ok(Self { client, policy })
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Whether a request to `url` may be sent: http(s), a host, no
    /// credentials in the URL, and (without the opt-in) no IP literal that
    /// is not public. Names are judged later, by the resolver.
    pub fn check(&self, url: &Url) -> Result<(), Refused> {
        check_url(self.policy, url)
    }

    /// A request to `url`, once [`Outbound::check`] allows it.
    pub fn request(&self, method: Method, url: Url) -> Result<RequestBuilder, Refused> {
        self.check(&url)?;
        Ok(self.client.request(method, url))
    }

    /// `POST url`, once [`Outbound::check`] allows it.
    pub fn post(&self, url: Url) -> Result<RequestBuilder, Refused> {
        self.request(Method::POST, url)
    }
}

/// [`Outbound::check`] for a policy.
pub fn check_url(policy: Policy, url: &Url) -> Result<(), Refused> {
    if !matches!(url.scheme(), "https" | "http") {
        return Err(Refused::Scheme(url.scheme().to_owned()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refused::Userinfo);
    }
    let ip: IpAddr = match url.host() {
        None => return Err(Refused::NoHost),
        Some(Host::Domain(_)) => return Ok(()),
        Some(Host::Ipv4(v4)) => v4.into(),
        Some(Host::Ipv6(v6)) => v6.into(),
    };
    match address::non_public(ip) {
        Some(kind) if !policy.allow_private_networks => Err(Refused::Address {
            host: ip.to_string(),
            kind,
        }),
        _ => Ok(()),
    }
}

/// The [`Refused`] behind a failed request, if the guard was why.
pub fn refusal(err: &reqwest::Error) -> Option<&Refused> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(r) = e.downcast_ref::<Refused>() {
            return Some(r);
        }
        source = e.source();
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicUsize, Ordering};

    use rstest::rstest;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[rstest]
    #[case("http://127.0.0.1:5432/")]
    #[case("https://10.0.0.1/")]
    #[case("https://169.254.169.254/latest/meta-data/")]
    #[case("https://[::1]/")]
    #[case("https://[fe80::1]/")]
    #[case("https://[::ffff:127.0.0.1]/")]
    #[case("https://0.0.0.0/")]
    #[case("https://100.64.0.1/")]
    #[case("http://2130706433/")] // 127.0.0.1 as one number
    #[case("http://0x7f.1/")] // 127.0.0.1 in hex
    fn ip_literals_that_are_not_public_are_refused(#[case] raw: &str) {
        let e = check_url(Policy::default(), &url(raw)).unwrap_err();
        assert!(matches!(e, Refused::Address { .. }), "{raw}: {e}");
        assert!(check_url(Policy::LOCAL, &url(raw)).is_ok(), "{raw} with the opt-in");
    }

    #[rstest]
    #[case("ftp://example.com/", "not `ftp:`")]
    #[case("file:///etc/passwd", "not `file:`")]
    #[case("https://user:pw@example.com/", "user name or password")]
    fn odd_urls_are_refused_even_with_the_opt_in(#[case] raw: &str, #[case] says: &str) {
        let e = check_url(Policy::LOCAL, &url(raw)).unwrap_err();
        assert!(e.to_string().contains(says), "{raw}: {e}");
    }

    #[test]
    fn public_addresses_and_names_pass_the_literal_check() {
        assert!(check_url(Policy::default(), &url("https://13.108.0.1/")).is_ok());
        assert!(check_url(Policy::default(), &url("https://acme.my.salesforce.com/")).is_ok());
    }

    /// A listener on 127.0.0.1 that counts the connections it accepts.
    async fn counting_listener() -> (u16, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        tokio::spawn(async move {
            while let Ok((_socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        });
        (port, hits)
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_never_gets_a_connection() {
        let (port, hits) = counting_listener().await;
        let out = Outbound::new(Policy::default(), |b| b.timeout(std::time::Duration::from_secs(5))).unwrap();
        let req = out
            .request(Method::GET, url(&format!("http://localhost:{port}/")))
            .unwrap();
        let err = req.send().await.unwrap_err();
        assert!(
            matches!(refusal(&err), Some(Refused::Resolved { kind: "loopback", .. })),
            "{err:?}"
        );
        let literal = out.request(Method::GET, url(&format!("http://127.0.0.1:{port}/")));
        assert!(matches!(literal, Err(Refused::Address { kind: "loopback", .. })));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(hits.load(Ordering::SeqCst), 0, "the listener was reached");
    }

    #[tokio::test]
    async fn with_the_opt_in_loopback_is_reached() {
        let (port, hits) = counting_listener().await;
        let out = Outbound::new(Policy::LOCAL, |b| b.timeout(std::time::Duration::from_millis(300))).unwrap();
        let req = out
            .request(Method::GET, url(&format!("http://localhost:{port}/")))
            .unwrap();
        // The listener never answers: the request times out, but it connected.
        let _ = req.send().await;
        assert!(hits.load(Ordering::SeqCst) >= 1);
    }
}
