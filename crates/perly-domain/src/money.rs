//! Money as the pages and messages show it: "$1,665.00".

/// Dollars with thousands separators and cents ("$1,665.00", "-$20.50").
pub fn usd(v: f64) -> String {
    let cents = (v * 100.0).round() as i64;
    let whole = (cents.abs() / 100).to_string();
    let mut out = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    format!("{}${out}.{:02}", if cents < 0 { "-" } else { "" }, cents.abs() % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_have_separators_and_cents() {
        assert_eq!(usd(1665.0), "$1,665.00");
        assert_eq!(usd(4200.5), "$4,200.50");
        assert_eq!(usd(0.0), "$0.00");
        assert_eq!(usd(1_234_567.891), "$1,234,567.89");
        assert_eq!(usd(-20.5), "-$20.50");
        assert_eq!(usd(999.999), "$1,000.00");
    }
}
