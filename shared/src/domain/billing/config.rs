//! Billing's configuration section: the past-due grace period and the operator's daily caps.

use std::time::Duration;

use super::Vendor;
use crate::platform::settings::Reader;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillingSettings {
    /// How long a `past_due` subscription keeps its plan (`BILLING_PAST_DUE_GRACE_DAYS`, default 7):
    /// Stripe's Smart Retries run for days, and a card that fails once should not cut a team off.
    pub past_due_grace: Duration,
    /// Units per vendor per UTC day across all users (`<VENDOR>_DAILY_<UNIT>_CAP`); unset = no cap.
    pub caps: Vec<(Vendor, i64)>,
}

impl Default for BillingSettings {
    fn default() -> Self {
        BillingSettings {
            past_due_grace: Duration::from_secs(7 * 86_400),
            caps: Vec::new(),
        }
    }
}

impl BillingSettings {
    pub fn read(r: &mut Reader) -> BillingSettings {
        let days: u64 = r.bounded("BILLING_PAST_DUE_GRACE_DAYS", 7, 0, 60);
        let mut caps = Vec::new();
        for vendor in Vendor::ALL {
            let variable = vendor.cap_variable();
            let Some(raw) = r.get(variable) else { continue };
            match raw.trim().parse::<i64>() {
                Ok(cap) if cap >= 0 => caps.push((vendor, cap)),
                _ => r.problem(variable, "must be a whole number of units, 0 or more"),
            }
        }
        BillingSettings {
            past_due_grace: Duration::from_secs(days * 86_400),
            caps,
        }
    }

    pub fn cap(&self, vendor: Vendor) -> Option<i64> {
        self.caps
            .iter()
            .find(|(v, _)| *v == vendor)
            .map(|(_, c)| *c)
    }
}
