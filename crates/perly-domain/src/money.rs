//! Money as Perly writes it, on its pages and in its Slack and Discord
//! messages: US dollars with thousands separators.

/// `"$1,665.00"`: dollars and cents (amounts in alerts and messages).
pub fn dollars(v: f64) -> String {
    let cents = (v * 100.0).round() as i64;
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    format!("{sign}${}.{:02}", grouped(cents / 100), cents % 100)
}

/// `"$4,200"`: whole dollars (tables, where cents are noise).
pub fn whole_dollars(v: f64) -> String {
    let whole = v.round() as i64;
    let sign = if whole < 0 { "-" } else { "" };
    format!("{sign}${}", grouped(whole.unsigned_abs()))
}

/// `"4,115"`: a count with thousands separators.
pub fn count(n: u64) -> String {
    grouped(n)
}

fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_have_thousands_separators_and_cents() {
        assert_eq!(dollars(1665.0), "$1,665.00");
        assert_eq!(dollars(4200.0), "$4,200.00");
        assert_eq!(dollars(10.5), "$10.50");
        assert_eq!(dollars(0.0), "$0.00");
        assert_eq!(dollars(1_234_567.891), "$1,234,567.89");
        assert_eq!(dollars(-12.3), "-$12.30");
    }

    #[test]
    fn whole_dollars_round_to_the_dollar() {
        assert_eq!(whole_dollars(4200.0), "$4,200");
        assert_eq!(whole_dollars(1_234_567.4), "$1,234,567");
        assert_eq!(whole_dollars(999.5), "$1,000");
        assert_eq!(count(4115), "4,115");
        assert_eq!(count(12), "12");
    }
}
