//! The area under the ROC curve, computed exactly from ranks
//! (Mann–Whitney U): the probability that a random positive has a higher
//! predictor than a random negative, ties counted half.

/// The AUC of `predictor` for `positive`, with its standard error.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Auc {
    pub auc: f64,
    /// Hanley & McNeil (1982) standard error: the spread to expect from
    /// another population of the same size.
    pub standard_error: f64,
}

/// AUC of `(predictor, positive)` pairs; `None` without both a positive and
/// a negative. NaN predictors are ranked above everything else.
pub fn auc(pairs: &[(f64, bool)]) -> Option<Auc> {
    let positives = pairs.iter().filter(|p| p.1).count() as u64;
    let negatives = pairs.len() as u64 - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut sorted: Vec<(f64, bool)> = pairs.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Twice the rank sum of the positives, in integers: a tie group spanning
    // 1-based ranks i+1..=j has the average rank (i+1+j)/2.
    let mut twice_rank_sum: u128 = 0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i + 1;
        while j < sorted.len() && sorted[j].0.total_cmp(&sorted[i].0).is_eq() {
            j += 1;
        }
        let in_group = sorted[i..j].iter().filter(|p| p.1).count() as u128;
        twice_rank_sum += in_group * (i as u128 + 1 + j as u128);
        i = j;
    }
    // U = R − n₊(n₊+1)/2, so 2U = 2R − n₊(n₊+1).
    let twice_u = twice_rank_sum - u128::from(positives) * u128::from(positives + 1);
    let a = twice_u as f64 / (2.0 * positives as f64 * negatives as f64);
    let (p, n) = (positives as f64, negatives as f64);
    let q1 = a / (2.0 - a);
    let q2 = 2.0 * a * a / (1.0 + a);
    let variance = (a * (1.0 - a) + (p - 1.0) * (q1 - a * a) + (n - 1.0) * (q2 - a * a)) / (p * n);
    Some(Auc {
        auc: a,
        standard_error: variance.max(0.0).sqrt(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(pairs: &[(f64, bool)]) -> f64 {
        auc(pairs).expect("both classes").auc
    }

    #[test]
    fn a_perfect_ranking_is_one() {
        assert_eq!(of(&[(0.1, false), (0.2, false), (0.7, true), (0.9, true)]), 1.0);
    }

    #[test]
    fn an_inverted_ranking_is_zero() {
        assert_eq!(of(&[(0.9, false), (0.8, false), (0.2, true), (0.1, true)]), 0.0);
    }

    #[test]
    fn all_ties_are_one_half() {
        assert_eq!(
            of(&[(5.0, true), (5.0, false), (5.0, false), (5.0, true), (5.0, false)]),
            0.5
        );
    }

    #[test]
    fn mixed_cases_count_pairs_and_half_ties() {
        // Positives 0.35 and 0.8 against negatives 0.1 and 0.4: 3 of 4 pairs.
        assert_eq!(of(&[(0.1, false), (0.4, false), (0.35, true), (0.8, true)]), 0.75);
        // Positive 2 ties negative 2 (½) and beats negative 1 (1): 1.5 of 2.
        assert_eq!(of(&[(1.0, false), (2.0, false), (2.0, true)]), 0.75);
    }

    #[test]
    fn one_class_alone_has_no_auc() {
        assert_eq!(auc(&[(1.0, true), (2.0, true)]), None);
        assert_eq!(auc(&[(1.0, false)]), None);
        assert_eq!(auc(&[]), None);
    }
}
