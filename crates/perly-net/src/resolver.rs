//! The DNS resolver of every outbound client. It resolves a name with the
//! system resolver and drops every address that is not public (see
//! [`crate::address`]); a name left with none is refused with
//! [`Refused::Resolved`]. Because the check runs on the very addresses the
//! connection then uses, a name that answers a public address to one lookup
//! and a private one to the next (DNS rebinding) gains nothing.
//!
//! IP-literal hosts never reach a resolver; [`crate::Outbound::check`]
//! judges those before a request is sent.

use std::net::SocketAddr;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::address::non_public;
use crate::{Policy, Refused};

/// Resolves names, keeping only the addresses `policy` allows.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    policy: Policy,
}

impl GuardedResolver {
    pub fn new(policy: Policy) -> Self {
        Self { policy }
    }

    /// The addresses of `host` Perly may connect to.
    pub async fn lookup(&self, host: &str) -> Result<Vec<SocketAddr>, Refused> {
        let found: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
            .await
            .map_err(|e| Refused::Lookup {
                host: host.to_owned(),
                reason: e.to_string(),
            })?
            .collect();
        if self.policy.allow_private_networks {
            return Ok(found);
        }
        let mut kind = None;
        let allowed: Vec<SocketAddr> = found
            .into_iter()
            .filter(|a| match non_public(a.ip()) {
                Some(k) => {
                    kind.get_or_insert(k);
                    false
                }
                None => true,
            })
            .collect();
        match (allowed.is_empty(), kind) {
            (true, Some(kind)) => Err(Refused::Resolved {
                host: host.to_owned(),
                kind,
            }),
            (true, None) => Err(Refused::Lookup {
                host: host.to_owned(),
                reason: "no addresses".into(),
            }),
            (false, dropped) => {
                if let Some(kind) = dropped {
                    tracing::warn!(
                        host,
                        kind,
                        "a name resolved to public and non-public addresses; using only the public ones"
                    );
                }
                Ok(allowed)
            }
        }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let me = *self;
        Box::pin(async move {
            let addrs = me.lookup(name.as_str()).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused_without_the_opt_in() {
        let strict = GuardedResolver::new(Policy::default());
        let e = strict.lookup("localhost").await.unwrap_err();
        assert!(
            matches!(&e, Refused::Resolved { host, kind } if host == "localhost" && *kind == "loopback"),
            "{e}"
        );
        assert!(e.to_string().contains("localhost"), "{e}");

        let open = GuardedResolver::new(Policy {
            allow_private_networks: true,
        });
        let addrs = open.lookup("localhost").await.unwrap();
        assert!(addrs.iter().any(|a| a.ip().is_loopback()), "{addrs:?}");
    }

    #[tokio::test]
    async fn the_reqwest_resolver_hook_refuses_too() {
        let strict = GuardedResolver::new(Policy::default());
        let name: Name = "localhost".parse().unwrap();
        let Err(e) = strict.resolve(name).await else {
            panic!("localhost resolved");
        };
        assert!(e.downcast_ref::<Refused>().is_some(), "{e}");
    }
}
