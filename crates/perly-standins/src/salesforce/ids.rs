//! Salesforce record ids: 15 case-sensitive characters (3-character key
//! prefix naming the object, 2-character pod, 1 reserved `0`, 9 base-62
//! digits of the record number) plus the 3-character case-safe suffix that
//! makes the 18-character form unique when compared case-insensitively.
//!
//! The suffix: split the 15 characters into three chunks of five; for each
//! chunk set bit `i` when character `i` is an upper-case `A`–`Z`; the 5-bit
//! value indexes `ABCDEFGHIJKLMNOPQRSTUVWXYZ012345` (the algorithm as
//! described on Salesforce StackExchange question 1653 and implemented by
//! the public converters; `00558000001N0Ke` → `00558000001N0KeAAK`).
//!
//! The stand-in derives every id from (key prefix, pod, number), so
//! generated records keep their id across runs: generated record `i` has
//! number `i + 1`, records created through the API get numbers from
//! [`INSERTED_BASE`] on.

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const SUFFIX: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

/// First record number of records created after start (far above any
/// generated index, well below 62⁹).
pub(crate) const INSERTED_BASE: u64 = 1_000_000_000_000_000;

/// The 3-character case-safe suffix of a 15-character id.
pub(crate) fn suffix(id15: &str) -> String {
    let bytes = id15.as_bytes();
    let mut out = String::with_capacity(3);
    for chunk in 0..3 {
        let mut bits = 0usize;
        for i in 0..5 {
            if bytes.get(chunk * 5 + i).is_some_and(u8::is_ascii_uppercase) {
                bits |= 1 << i;
            }
        }
        out.push(char::from(SUFFIX[bits]));
    }
    out
}

/// The 18-character id of `number` for `prefix` on `pod`.
pub(crate) fn make(prefix: &str, pod: &str, number: u64) -> String {
    let mut digits = [b'0'; 9];
    let mut n = number;
    for d in digits.iter_mut().rev() {
        // `n % 62` is always below 62.
        *d = BASE62[(n % 62) as usize];
        n /= 62;
    }
    let mut id = String::with_capacity(18);
    id.push_str(prefix);
    id.push_str(pod);
    id.push('0');
    id.extend(digits.iter().map(|b| char::from(*b)));
    let s = suffix(&id);
    id.push_str(&s);
    id
}

/// A parsed id: key prefix, pod and record number. Accepts the 15- and the
/// 18-character form; an 18-character id whose suffix does not match its
/// first 15 characters is not an id (`MALFORMED_ID`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub(crate) prefix: String,
    pub(crate) pod: String,
    pub(crate) number: u64,
}

pub(crate) fn parse(id: &str) -> Option<Parsed> {
    if !(id.len() == 15 || id.len() == 18) || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let id15 = &id[..15];
    if id.len() == 18 && !id[15..].eq_ignore_ascii_case(&suffix(id15)) {
        return None;
    }
    let mut number: u64 = 0;
    for b in id15[6..].bytes() {
        let d = BASE62.iter().position(|c| *c == b)? as u64;
        number = number.checked_mul(62)?.checked_add(d)?;
    }
    Some(Parsed {
        prefix: id15[..3].to_owned(),
        pod: id15[3..5].to_owned(),
        number,
    })
}

/// The 15-character form, for comparisons (`WHERE Id = '…'` takes either).
pub(crate) fn id15(id: &str) -> &str {
    if id.len() >= 15 {
        &id[..15]
    } else {
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_suffix_matches_known_ids() {
        assert_eq!(suffix("00558000001N0Ke"), "AAK");
        // From the recorded composite responses in the specs.
        assert_eq!(suffix("0012300000bVTq1"), "AAG");
        assert_eq!(suffix("0037e00001WZ310"), "AAD");
        assert_eq!(suffix("750R0000000zlh9"), "IAA");
    }

    #[test]
    fn ids_round_trip_through_parse() {
        let id = make("001", "5e", 123_456_789);
        assert_eq!(id.len(), 18);
        assert!(id.starts_with("0015e0"));
        let p = parse(&id).expect("parses");
        assert_eq!(p.number, 123_456_789);
        assert_eq!(p.prefix, "001");
        assert_eq!(parse(&id[..15]), Some(p.clone()));
        assert_eq!(
            parse(&make("003", "5e", INSERTED_BASE + 7)).map(|p| p.number),
            Some(INSERTED_BASE + 7)
        );
    }

    #[test]
    fn a_wrong_suffix_or_length_is_not_an_id() {
        let mut id = make("001", "5e", 42);
        id.replace_range(15.., "ZZZ");
        assert_eq!(parse(&id), None);
        assert_eq!(parse("001"), None);
        assert_eq!(parse("001!!0000000000"), None);
    }
}
