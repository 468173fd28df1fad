//! A customer's key in the `events` table (migration
//! `20261210000001_events_by_customer_key`): the 48 bits that end its id
//! (its last 12 hexadecimal digits, random in every UUID Perly makes). A
//! customer's events are one range of the index on (key, position); the
//! index on (workspace id, customer id, position) it replaced held two
//! 36-character texts per event, and at 100,000 customers every insert
//! landed on a random leaf of it (issue 17).
//!
//! Keys are not unique: every query that reads events by key also compares
//! the customer id (and the workspace).

use perly_domain::ids::CustomerId;

/// The key of `customer`'s events.
pub fn customer_key(customer: &CustomerId) -> i64 {
    // 48 bits: always a positive i64.
    (customer.0.as_u128() & 0xFFFF_FFFF_FFFF) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key is the id's last 12 hexadecimal digits, as the migration
    /// computes it for the events stored before it.
    #[test]
    fn the_key_is_the_last_twelve_hex_digits_of_the_id() {
        let id: CustomerId = "019a2b00-0000-7000-8000-00000000ff01".parse().expect("id");
        assert_eq!(customer_key(&id), 0xff01);
        let id: CustomerId = "019a2b00-0000-7000-8000-ffffffffffff".parse().expect("id");
        assert_eq!(customer_key(&id), 0xffff_ffff_ffff);
        let fresh = CustomerId::new();
        let text = fresh.to_string();
        assert_eq!(customer_key(&fresh), i64::from_str_radix(&text[24..], 16).expect("hex"));
    }
}
