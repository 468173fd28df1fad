//! Where Perly talks to Salesforce. Perly sends the connected app's
//! `client_secret`, PKCE verifiers and tokens to these hosts, so each must
//! be Salesforce's:
//!
//! - the configured login hosts ([`LoginHosts`], from
//!   `PERLY_SALESFORCE__LOGIN_URL` and `…__SANDBOX_LOGIN_URL`), trusted as
//!   the operator configured them (a local stand-in, too);
//! - a My Domain an admin types ([`LoginHosts::my_domain`]): an https host
//!   under `salesforce.com` or `force.com` (`acme.my.salesforce.com`,
//!   `acme--uat.sandbox.my.salesforce.com`), on the default port, with no
//!   path, query or user name, or exactly a configured login URL;
//! - an org's `instance_url` from a token answer ([`check_instance`]): the
//!   same kind of Salesforce host, or the very login URL that answered.
//!
//! Hosts read back from the database are checked again before use
//! ([`LoginHosts::check_login`]), so a row written before these rules, or
//! under another configuration, is not trusted blindly. Which *addresses*
//! those names may resolve to is [`perly_net`]'s business.

use url::{Host, Url};

/// The domains whose subdomains may be Salesforce login and API hosts.
pub const SALESFORCE_DOMAINS: [&str; 2] = ["salesforce.com", "force.com"];

/// Subdomains of those that serve pages, not the OAuth or REST API.
const NOT_API: [(&str, &str); 3] = [
    (
        ".lightning.force.com",
        "that is the Lightning address of the org; use its My Domain login URL, like https://yourdomain.my.salesforce.com",
    ),
    (
        ".vf.force.com",
        "that is a Visualforce address; use the org's My Domain login URL, like https://yourdomain.my.salesforce.com",
    ),
    (
        ".content.force.com",
        "that is a file-content address; use the org's My Domain login URL, like https://yourdomain.my.salesforce.com",
    ),
];

/// Why a host is not one Perly talks to, in words for the admin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HostError(pub String);

fn err(m: impl Into<String>) -> HostError {
    HostError(m.into())
}

/// Whether `url` is an https Salesforce host and nothing more:
/// `https://{name}.salesforce.com` or `https://{name}.force.com`, default
/// port, no user name, path, query or fragment.
pub fn salesforce_host(url: &Url) -> Result<(), HostError> {
    if url.scheme() != "https" {
        return Err(err("the address must start with https://"));
    }
    let host = match url.host() {
        Some(Host::Domain(d)) => d.to_ascii_lowercase(),
        Some(_) => return Err(err("use the org's host name, not an IP address")),
        None => return Err(err("the address has no host")),
    };
    let under = SALESFORCE_DOMAINS.iter().any(|d| {
        host.strip_suffix(d)
            .and_then(|rest| rest.strip_suffix('.'))
            .is_some_and(|name| !name.is_empty() && !name.ends_with('.'))
    });
    if !under {
        return Err(err(format!(
            "{host} is not a Salesforce host: a My Domain ends in .my.salesforce.com (or .salesforce.com, .force.com)"
        )));
    }
    if let Some((_, why)) = NOT_API.iter().find(|(suffix, _)| host.ends_with(suffix)) {
        return Err(err(*why));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(err("the address cannot carry a user name or password"));
    }
    if url.port().is_some() {
        return Err(err("the address cannot name a port"));
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(err(
            "enter only the address, without a path: https://yourdomain.my.salesforce.com",
        ));
    }
    Ok(())
}

/// Whether `a` and `b` are the same place: same scheme, host and port,
/// the same path (ignoring a trailing `/`), and no query, fragment or
/// user name on `a`.
fn same_place(a: &Url, b: &Url) -> bool {
    a.origin() == b.origin()
        && a.path().trim_end_matches('/') == b.path().trim_end_matches('/')
        && a.query().is_none()
        && a.fragment().is_none()
        && a.username().is_empty()
        && a.password().is_none()
}

/// The configured Production and Sandbox login URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginHosts {
    production: Url,
    sandbox: Url,
}

impl LoginHosts {
    /// From configuration. Each must be an http(s) URL without a user name,
    /// query or fragment; plain http only when `allow_http` (local
    /// stand-ins behind `PERLY_OUTBOUND__ALLOW_PRIVATE_NETWORKS`).
    pub fn new(production: &str, sandbox: &str, allow_http: bool) -> Result<Self, HostError> {
        let parse = |raw: &str, key: &str| {
            let raw = raw.trim().trim_end_matches('/');
            let url = Url::parse(raw).map_err(|e| err(format!("{key} `{raw}` is not a URL ({e})")))?;
            let scheme_ok = url.scheme() == "https" || (allow_http && url.scheme() == "http");
            if !scheme_ok {
                return Err(err(format!(
                    "{key} must start with https:// (plain http only with PERLY_OUTBOUND__ALLOW_PRIVATE_NETWORKS=true, for local stand-ins)"
                )));
            }
            if url.host().is_none()
                || !url.username().is_empty()
                || url.password().is_some()
                || url.query().is_some()
                || url.fragment().is_some()
            {
                return Err(err(format!(
                    "{key} must be a plain login address, like https://login.salesforce.com"
                )));
            }
            Ok(url)
        };
        Ok(Self {
            production: parse(production, "PERLY_SALESFORCE__LOGIN_URL")?,
            sandbox: parse(sandbox, "PERLY_SALESFORCE__SANDBOX_LOGIN_URL")?,
        })
    }

    pub fn production(&self) -> &Url {
        &self.production
    }

    pub fn sandbox(&self) -> &Url {
        &self.sandbox
    }

    /// Whether `url` is one of the configured login URLs.
    pub fn is_configured(&self, url: &Url) -> bool {
        same_place(url, &self.production) || same_place(url, &self.sandbox)
    }

    /// The login URL of an admin's My Domain, from what they typed.
    pub fn my_domain(&self, raw: &str) -> Result<Url, HostError> {
        let raw = raw.trim();
        let url = Url::parse(raw)
            .map_err(|_| err("the My Domain URL is not a URL: use https://yourdomain.my.salesforce.com"))?;
        if self.is_configured(&url) {
            return Ok(url);
        }
        salesforce_host(&url)?;
        Ok(url)
    }

    /// Whether a stored login URL may still be used: a configured login
    /// URL or a Salesforce host.
    pub fn check_login(&self, url: &Url) -> Result<(), HostError> {
        if self.is_configured(url) {
            return Ok(());
        }
        salesforce_host(url).map_err(|e| err(format!("login host {}: {e}", url.as_str().trim_end_matches('/'))))
    }

    /// What a page's `form-action` must allow for the connect form, whose
    /// answer redirects to one of these: the configured login origins and
    /// every https host under the Salesforce domains (My Domain).
    pub fn form_action_sources(&self) -> Vec<String> {
        let mut sources: Vec<String> = [&self.production, &self.sandbox]
            .into_iter()
            .map(|u| u.origin())
            .filter(|o| o.is_tuple())
            .map(|o| o.ascii_serialization())
            .collect();
        sources.dedup();
        sources.extend(SALESFORCE_DOMAINS.iter().map(|d| format!("https://*.{d}")));
        sources
    }
}

/// Whether an org's `instance_url` (from a token answer, or stored) may be
/// called with its tokens: a Salesforce host, or the login URL that handed
/// it out (a stand-in is its own instance).
pub fn check_instance(instance: &Url, login: &Url) -> Result<(), HostError> {
    if same_place(instance, login) {
        return Ok(());
    }
    salesforce_host(instance).map_err(|e| {
        err(format!(
            "Salesforce named {} as the org's API host, which Perly does not call: {e}",
            instance.as_str().trim_end_matches('/')
        ))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use rstest::rstest;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn hosts() -> LoginHosts {
        LoginHosts::new("https://login.salesforce.com", "https://test.salesforce.com", false).unwrap()
    }

    fn standins() -> LoginHosts {
        LoginHosts::new("http://127.0.0.1:8083", "http://127.0.0.1:8084/", true).unwrap()
    }

    #[rstest]
    #[case("https://acme.my.salesforce.com")]
    #[case("https://acme.my.salesforce.com/")]
    #[case("https://ACME.My.Salesforce.com")]
    #[case("https://acme--uat.sandbox.my.salesforce.com")]
    #[case("https://acme.develop.my.salesforce.com")]
    #[case("https://na123.salesforce.com")]
    #[case("https://login.salesforce.com")]
    #[case("https://acme.secure.force.com")]
    #[case("https://acme.cloudforce.force.com")]
    fn salesforce_hosts_are_allowed(#[case] raw: &str) {
        assert_eq!(salesforce_host(&url(raw)), Ok(()), "{raw}");
        assert!(hosts().my_domain(raw).is_ok(), "{raw}");
    }

    #[rstest]
    #[case("http://acme.my.salesforce.com", "https://")]
    #[case("https://evil.example.com", "not a Salesforce host")]
    #[case("https://salesforce.com.evil.example", "not a Salesforce host")]
    #[case("https://evilsalesforce.com", "not a Salesforce host")]
    #[case("https://evilforce.com", "not a Salesforce host")]
    #[case("https://salesforce.com", "not a Salesforce host")]
    #[case("https://acme.my.salesforce.com.", "not a Salesforce host")]
    #[case("https://127.0.0.1", "not an IP address")]
    #[case("https://169.254.169.254", "not an IP address")]
    #[case("https://10.0.0.1", "not an IP address")]
    #[case("https://[::1]", "not an IP address")]
    #[case("http://127.0.0.1:5432", "https://")]
    #[case("https://acme.my.salesforce.com:8443", "port")]
    #[case("https://acme.my.salesforce.com:443", "")] // the default port is fine
    #[case("https://user:pw@acme.my.salesforce.com", "user name")]
    #[case("https://acme.my.salesforce.com/services/oauth2", "without a path")]
    #[case("https://acme.my.salesforce.com/?x=1", "without a path")]
    #[case("https://acme.my.salesforce.com/#x", "without a path")]
    #[case("https://acme.lightning.force.com", "Lightning")]
    #[case("https://acme--c.vf.force.com", "Visualforce")]
    fn other_hosts_are_refused(#[case] raw: &str, #[case] says: &str) {
        let got = salesforce_host(&url(raw));
        if says.is_empty() {
            assert_eq!(got, Ok(()), "{raw}");
            return;
        }
        let e = got.expect_err(raw);
        assert!(e.0.contains(says), "{raw}: {e}");
        assert!(hosts().my_domain(raw).is_err(), "{raw}");
        assert!(
            standins().my_domain(raw).is_err(),
            "{raw}: not a configured stand-in either"
        );
    }

    #[test]
    fn a_configured_login_url_is_a_valid_my_domain_but_its_neighbours_are_not() {
        let h = standins();
        assert!(h.my_domain("http://127.0.0.1:8084").is_ok());
        assert!(h.my_domain("http://127.0.0.1:8083/").is_ok());
        for near in [
            "http://127.0.0.1:8085",
            "https://127.0.0.1:8084",
            "http://127.0.0.1:8084/other",
            "http://localhost:8084",
        ] {
            assert!(h.my_domain(near).is_err(), "{near}");
        }
        assert!(h.check_login(&url("http://127.0.0.1:8083")).is_ok());
        assert!(h.check_login(&url("https://acme.my.salesforce.com")).is_ok());
        assert!(h.check_login(&url("http://127.0.0.1:5432")).is_err());
    }

    #[test]
    fn configured_login_urls_must_be_https_unless_local_stand_ins_are_allowed() {
        let e = LoginHosts::new("http://127.0.0.1:8083", "https://test.salesforce.com", false).unwrap_err();
        assert!(
            e.0.contains("PERLY_SALESFORCE__LOGIN_URL must start with https://"),
            "{e}"
        );
        assert!(LoginHosts::new("https://login.salesforce.com", "ftp://x", true).is_err());
        assert!(LoginHosts::new("https://u:p@login.salesforce.com", "https://test.salesforce.com", true).is_err());
    }

    #[rstest]
    #[case("https://acme.my.salesforce.com", "https://login.salesforce.com", true)]
    #[case("https://acme.my.salesforce.com/", "http://127.0.0.1:8083", true)]
    #[case("http://127.0.0.1:8083", "http://127.0.0.1:8083", true)]
    #[case("http://127.0.0.1:8083/", "http://127.0.0.1:8083", true)]
    #[case("http://127.0.0.1:9999", "http://127.0.0.1:8083", false)]
    #[case("http://127.0.0.1:5432", "https://login.salesforce.com", false)]
    #[case("https://169.254.169.254", "https://login.salesforce.com", false)]
    #[case("https://evil.example.com", "https://login.salesforce.com", false)]
    #[case("https://acme.my.salesforce.com/sneaky/path", "https://login.salesforce.com", false)]
    #[case("https://acme.my.salesforce.com:8443", "https://login.salesforce.com", false)]
    fn instance_urls_must_be_salesforce_or_the_login_host_itself(
        #[case] instance: &str,
        #[case] login: &str,
        #[case] ok: bool,
    ) {
        assert_eq!(
            check_instance(&url(instance), &url(login)).is_ok(),
            ok,
            "{instance} from {login}"
        );
    }

    #[test]
    fn form_action_sources_are_the_login_origins_and_salesforce_wildcards() {
        assert_eq!(
            standins().form_action_sources(),
            [
                "http://127.0.0.1:8083",
                "http://127.0.0.1:8084",
                "https://*.salesforce.com",
                "https://*.force.com"
            ]
        );
        assert_eq!(
            hosts().form_action_sources(),
            [
                "https://login.salesforce.com",
                "https://test.salesforce.com",
                "https://*.salesforce.com",
                "https://*.force.com"
            ]
        );
    }
}
