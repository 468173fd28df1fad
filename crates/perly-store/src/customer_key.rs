//! A customer's key in the `events` table (migration
//! `20261210000001_events_by_customer_key`): a customer's events are one
//! range of the index on (key, position). The index on (workspace id,
//! customer id, position) it replaced held two 36-character texts per
//! event, and at 100,000 customers every insert landed on a random leaf of
//! it (issue 17).
//!
//! The key keeps the ids' order: customers made together (an import) have
//! their events side by side, and a claim of them reads the index leaf
//! after leaf. It is the UUIDv7's 48-bit millisecond timestamp, shifted
//! left 15 bits, with the low 15 bits of the counter that orders the ids
//! made in one millisecond (bits 32–46 of the id). Keys of random bits
//! scattered a full rescore's reads over the whole index (20,000 customers
//! on PostgreSQL: 4.5–5.0 s instead of 3.3 s).
//!
//! Keys are not unique (another process's ids of the same millisecond
//! share one in 32,768; ids of other versions have random bits there):
//! every query that reads events by key also compares the customer id and
//! the workspace.

use perly_domain::ids::CustomerId;

/// The key of `customer`'s events: always positive (63 bits).
pub fn customer_key(customer: &CustomerId) -> i64 {
    let id = customer.0.as_u128();
    let millis = (id >> 80) as i64;
    let counter = ((id >> 32) & 0x7FFF) as i64;
    (millis << 15) | counter
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key is computed from the id's text as the migration computes
    /// it for the events stored before it: the first 12 hex digits times
    /// 32,768, plus the 4 that start the last group, modulo 32,768.
    #[test]
    fn the_key_is_the_timestamp_and_the_counters_low_bits() {
        let by_text = |text: &str| {
            let hex = |s: &str| i64::from_str_radix(s, 16).expect("hex");
            hex(&format!("{}{}", &text[0..8], &text[9..13])) * 32_768 + hex(&text[24..28]) % 32_768
        };
        for text in [
            "019a2b00-0000-7000-8000-000000000011",
            "019a2b00-0000-7000-bfff-ffffffffffff",
            "ffffffff-ffff-4fff-bfff-ffffffffffff",
            "00000000-0000-4000-8000-000000000000",
        ] {
            let id: CustomerId = text.parse().expect("id");
            assert_eq!(customer_key(&id), by_text(text), "{text}");
            assert!(customer_key(&id) >= 0);
        }
        let fresh = CustomerId::new();
        assert_eq!(customer_key(&fresh), by_text(&fresh.to_string()));
    }

    /// Ids made one after another get keys in the same order (the
    /// counter runs within a millisecond), and distinct ones.
    #[test]
    fn ids_made_in_a_row_get_increasing_distinct_keys() {
        let keys: Vec<i64> = (0..5_000).map(|_| customer_key(&CustomerId::new())).collect();
        let rises = keys.windows(2).filter(|w| w[1] > w[0]).count();
        assert!(rises >= keys.len() - 3, "{rises} of {} rise", keys.len() - 1);
    }
}
