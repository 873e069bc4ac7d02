//! Stripe's configuration section: the secret API key, the webhook endpoint secrets (several while
//! one is rolled), the API host and the pinned API version.
//!
//! In the `local` stage with `STRIPE_SECRET_KEY` unset, the sandbox's values apply (its key, its
//! fixed webhook secret, its URL), so `cargo xtask dev` sells plans with no Stripe account.
//! Deployed, a missing key or secret fails only the functions that need it.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use crate::platform::settings::{ConfigError, Reader};

pub const STRIPE_BASE_URL: &str = "https://api.stripe.com";
/// Every request carries this `Stripe-Version`, and the webhook endpoint must be created with it
/// (docs/stripe.md): period dates are read from subscription items, as versions since
/// `2025-03-31.basil` put them, and an invoice names its subscription under `parent`.
pub const API_VERSION: &str = "2026-07-29.dahlia";
/// The bundled sandbox's default address (`PARLEY_SANDBOX_PORT`), used locally when no key is set.
pub const LOCAL_SANDBOX_URL: &str = "http://127.0.0.1:9010";
/// The sandbox's key: any request carrying another is refused, as Stripe would refuse it.
pub const SANDBOX_SECRET_KEY: &str = "sk_test_parley_sandbox";
/// The sandbox signs its events with this endpoint secret; only ever trusted in the `local` stage
/// with no Stripe key configured.
pub const SANDBOX_WEBHOOK_SECRET: &str = "whsec_parley_local_sandbox_not_for_deployment";
/// Variables whose values are secrets.
pub const SECRETS: &[&str] = &["STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"];
/// More endpoint secrets than this at once is a configuration mistake, not a rotation.
const MAX_WEBHOOK_SECRETS: usize = 4;

#[derive(Clone)]
pub struct StripeSettings {
    /// `sk_…` (or a restricted `rk_…` key with the permissions docs/stripe.md lists).
    pub secret_key: Option<SecretString>,
    /// The endpoint's signing secrets (`whsec_…`), every one accepted.
    pub webhook_secrets: Vec<SecretString>,
    pub base_url: String,
    /// True when the sandbox's values were filled in (local stage, no key).
    pub sandbox: bool,
}

impl fmt::Debug for StripeSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeSettings")
            .field(
                "secret_key",
                &self.secret_key.as_ref().map(|_| "[redacted]"),
            )
            .field("webhook_secrets", &self.webhook_secrets.len())
            .field("base_url", &self.base_url)
            .field("sandbox", &self.sandbox)
            .finish()
    }
}

impl StripeSettings {
    pub fn read(r: &mut Reader) -> StripeSettings {
        let secret_key = r.get("STRIPE_SECRET_KEY").map(SecretString::from);
        if let Some(key) = &secret_key {
            let key = key.expose_secret();
            let shaped = (key.starts_with("sk_") || key.starts_with("rk_"))
                && key.len() <= 255
                && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !shaped {
                r.problem(
                    "STRIPE_SECRET_KEY",
                    "must be a Stripe secret key (sk_live_…, sk_test_…) or restricted key (rk_…)",
                );
            }
        }
        let sandbox = secret_key.is_none() && !r.stage.is_deployed();
        let webhook_secrets = match r.get("STRIPE_WEBHOOK_SECRET") {
            Some(raw) => parse_webhook_secrets(&raw).unwrap_or_else(|why| {
                r.problem("STRIPE_WEBHOOK_SECRET", why);
                Vec::new()
            }),
            None if sandbox => vec![SecretString::from(SANDBOX_WEBHOOK_SECRET)],
            None => Vec::new(),
        };
        let default_base = if sandbox {
            LOCAL_SANDBOX_URL
        } else {
            STRIPE_BASE_URL
        };
        let base_url = r
            .base_url("STRIPE_BASE_URL", Some(default_base))
            .unwrap_or_default();
        StripeSettings {
            secret_key: secret_key
                .or_else(|| sandbox.then(|| SecretString::from(SANDBOX_SECRET_KEY))),
            webhook_secrets,
            base_url,
            sandbox,
        }
    }

    /// For the functions that call Stripe (checkout, portal, the billing and account workers).
    pub fn require_api(&self) -> Result<&StripeSettings, ConfigError> {
        match self.secret_key {
            Some(_) => Ok(self),
            None => Err(ConfigError::single(
                "STRIPE_SECRET_KEY",
                "this function calls Stripe and needs its secret key",
            )),
        }
    }

    /// For the webhook receiver.
    pub fn require_webhook(&self) -> Result<&StripeSettings, ConfigError> {
        if self.webhook_secrets.is_empty() {
            return Err(ConfigError::single(
                "STRIPE_WEBHOOK_SECRET",
                "this function verifies Stripe webhooks and needs the endpoint's signing secret \
                 (whsec_…; comma-separated while one is rolled)",
            ));
        }
        Ok(self)
    }
}

/// `whsec_…[,whsec_…]`: every secret the endpoint may sign with, spaces around commas allowed.
pub fn parse_webhook_secrets(raw: &str) -> Result<Vec<SecretString>, String> {
    let parts: Vec<&str> = raw
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if parts.is_empty() {
        return Err("must name at least one endpoint secret (whsec_…)".to_owned());
    }
    if parts.len() > MAX_WEBHOOK_SECRETS {
        return Err(format!(
            "names {} secrets; at most {MAX_WEBHOOK_SECRETS} (the current one and those being rolled)",
            parts.len()
        ));
    }
    for (i, part) in parts.iter().enumerate() {
        let shaped = part.starts_with("whsec_")
            && part.len() > "whsec_".len()
            && part.len() <= 255
            && part.bytes().all(|b| b.is_ascii_graphic());
        if !shaped {
            // Never the value: it is a secret.
            return Err(format!(
                "secret #{} is not an endpoint signing secret (whsec_… from the webhook endpoint's page)",
                i + 1
            ));
        }
    }
    Ok(parts.into_iter().map(SecretString::from).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(vars: &[(&str, &str)]) -> (StripeSettings, Vec<&'static str>) {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |n: &str| map.get(n).cloned();
        let mut r = Reader::new(&lookup);
        let s = StripeSettings::read(&mut r);
        (s, r.problems.iter().map(|p| p.variable).collect())
    }

    #[test]
    fn local_without_a_key_uses_the_sandbox() {
        let (s, problems) = read(&[]);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(s.sandbox);
        assert_eq!(s.base_url, LOCAL_SANDBOX_URL);
        assert_eq!(
            s.secret_key.as_ref().unwrap().expose_secret(),
            SANDBOX_SECRET_KEY
        );
        assert_eq!(s.webhook_secrets.len(), 1);
        assert!(s.require_api().is_ok() && s.require_webhook().is_ok());
    }

    #[test]
    fn deployed_without_keys_fails_only_on_require() {
        let (s, problems) = read(&[("PARLEY_STAGE", "prod")]);
        assert!(problems.is_empty());
        assert!(!s.sandbox);
        assert_eq!(s.base_url, STRIPE_BASE_URL);
        assert_eq!(
            s.require_api().unwrap_err().problems[0].variable,
            "STRIPE_SECRET_KEY"
        );
        assert_eq!(
            s.require_webhook().unwrap_err().problems[0].variable,
            "STRIPE_WEBHOOK_SECRET"
        );
    }

    #[test]
    fn secrets_are_validated_rotations_accepted_and_never_shown() {
        let (s, problems) = read(&[
            ("PARLEY_STAGE", "prod"),
            ("STRIPE_SECRET_KEY", "sk_live_verysecret123"),
            (
                "STRIPE_WEBHOOK_SECRET",
                " whsec_new-secret-1 , whsec_old-secret-2 ",
            ),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(s.webhook_secrets.len(), 2);
        assert_eq!(s.webhook_secrets[1].expose_secret(), "whsec_old-secret-2");
        let debug = format!("{s:?}");
        assert!(
            !debug.contains("verysecret") && !debug.contains("secret-1"),
            "{debug}"
        );

        let (_, problems) = read(&[
            ("STRIPE_SECRET_KEY", "pk_live_publishable"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_ok,not-a-secret"),
            ("STRIPE_BASE_URL", "ftp://x"),
        ]);
        assert_eq!(
            problems,
            [
                "STRIPE_SECRET_KEY",
                "STRIPE_WEBHOOK_SECRET",
                "STRIPE_BASE_URL"
            ]
        );
        let e = parse_webhook_secrets("whsec_a,whsec_b,whsec_c,whsec_d,whsec_e").unwrap_err();
        assert!(e.contains("at most 4"), "{e}");
        let e = parse_webhook_secrets("whsec_ok, hunter2").unwrap_err();
        assert!(e.contains("#2") && !e.contains("hunter2"), "{e}");
        assert!(parse_webhook_secrets(" , ").is_err());
    }
}
