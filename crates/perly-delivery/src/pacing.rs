//! Pacing per webhook, so Perly stays inside each platform's rate limit
//! instead of finding it with 429s.
//!
//! Each channel keeps one timestamp, its GCRA "theoretical arrival time"
//! (`tat`): a post is allowed once `now ≥ tat − interval·(burst−1)`, and each
//! post moves `tat` on by one interval. That is a token bucket of `burst`
//! tokens refilled every `interval`, in one number that lives in the
//! channel's row.
//! - Slack: one message per second per webhook, short bursts allowed
//!   (docs.slack.dev rate limits): 1 s, burst 3.
//! - Discord: 5 per 2 s per webhook and 30 per 60 s per channel (community
//!   figures from Discord staff): 2.4 s, burst 5, which never exceeds
//!   either. Discord's own `X-RateLimit-Remaining: 0` with
//!   `X-RateLimit-Reset-After` is honoured on top.

use chrono::{DateTime, Duration, Utc};
use perly_domain::channels::Platform;

use crate::retry::Answer;

/// A rate: `burst` posts at once, then one every `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    pub interval: Duration,
    pub burst: i32,
}

pub fn pace(platform: Platform) -> Pace {
    match platform {
        Platform::Slack => Pace {
            interval: Duration::milliseconds(1_000),
            burst: 3,
        },
        Platform::Discord => Pace {
            interval: Duration::milliseconds(2_400),
            burst: 5,
        },
    }
}

impl Pace {
    /// After a post at `now`: the new `tat` and the earliest next post.
    pub fn after_post(self, tat: DateTime<Utc>, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let tat = tat.max(now) + self.interval;
        (tat, tat - self.interval * (self.burst - 1))
    }

    /// As [`Pace::after_post`], honouring the vendor's own rate-limit
    /// headers on top: with `X-RateLimit-Remaining: 0` the next post waits
    /// at least `X-RateLimit-Reset-After` (Discord's bucket is empty).
    pub fn after_answer(
        self,
        tat: DateTime<Utc>,
        now: DateTime<Utc>,
        answer: &Answer,
    ) -> (DateTime<Utc>, DateTime<Utc>) {
        let (tat, mut next) = self.after_post(tat, now);
        if answer.rate_remaining == Some(0) {
            if let Some(reset) = answer.rate_reset_after.and_then(|d| Duration::from_std(d).ok()) {
                next = next.max(now + reset);
            }
        }
        (tat, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Discord's answer as the worker reads it, from real header values.
    fn discord_answer(remaining: &str, reset_after: &str) -> Answer {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("x-ratelimit-limit", "5".parse().expect("header"));
        h.insert("x-ratelimit-remaining", remaining.parse().expect("header"));
        h.insert("x-ratelimit-reset-after", reset_after.parse().expect("header"));
        h.insert("x-ratelimit-bucket", "abcd1234".parse().expect("header"));
        Answer::from_parts(200, &h, "{}".into())
    }

    #[test]
    fn an_empty_discord_bucket_holds_the_next_post_until_it_resets() {
        let p = pace(Platform::Discord);
        let now = DateTime::<Utc>::UNIX_EPOCH + Duration::days(20_000);
        // A fresh channel may post again at once (burst)...
        let (_, plain) = p.after_answer(now - Duration::hours(1), now, &discord_answer("4", "0.400"));
        assert!(plain <= now, "{plain}");
        // ...unless Discord says the bucket is empty: then not before it resets.
        let (_, held) = p.after_answer(now - Duration::hours(1), now, &discord_answer("0", "7.250"));
        assert_eq!(held, now + Duration::milliseconds(7_250));
        // A reset sooner than pacing's own wait changes nothing.
        let busy = now + Duration::seconds(30);
        let (_, paced) = p.after_post(busy, now);
        assert_eq!(p.after_answer(busy, now, &discord_answer("0", "0.100")).1, paced);
        // Headers that do not parse are ignored, never a panic or a wait.
        assert_eq!(
            p.after_answer(now - Duration::hours(1), now, &discord_answer("0", "soon"))
                .1,
            plain
        );
        assert_eq!(
            p.after_answer(now - Duration::hours(1), now, &discord_answer("none", "9"))
                .1,
            plain
        );
    }

    /// Posts a channel would make when it always has something to send.
    fn posts(p: Pace, start: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let (mut tat, mut next) = (DateTime::<Utc>::UNIX_EPOCH, start);
        let mut out = Vec::new();
        for _ in 0..n {
            let at = next;
            out.push(at);
            (tat, next) = p.after_post(tat, at);
            next = next.max(at);
        }
        out
    }

    fn max_in_window(posts: &[DateTime<Utc>], window: Duration) -> usize {
        (0..posts.len())
            .map(|i| posts[i..].iter().take_while(|t| **t - posts[i] < window).count())
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn a_backlog_goes_out_in_a_short_burst_then_at_the_rate() {
        let start = DateTime::<Utc>::UNIX_EPOCH + Duration::days(20_000);
        let slack = posts(pace(Platform::Slack), start, 10);
        assert_eq!(slack[2], start, "a burst of three at once");
        assert_eq!(slack[3] - slack[2], Duration::seconds(1));
        assert!(max_in_window(&slack, Duration::seconds(10)) <= 12);
    }

    proptest! {
        #[test]
        fn discord_pacing_never_exceeds_five_per_two_seconds_or_thirty_per_minute(gaps in proptest::collection::vec(0i64..5_000, 1..120)) {
            let p = pace(Platform::Discord);
            let mut tat = DateTime::<Utc>::UNIX_EPOCH;
            let mut now = DateTime::<Utc>::UNIX_EPOCH + Duration::days(20_000);
            let mut next = now;
            let mut sent = Vec::new();
            for g in gaps {
                // Something new to send `g` ms later; it goes when pacing allows.
                now += Duration::milliseconds(g);
                let at = now.max(next);
                sent.push(at);
                (tat, next) = p.after_post(tat, at);
                now = at;
            }
            prop_assert!(max_in_window(&sent, Duration::seconds(2)) <= 5);
            prop_assert!(max_in_window(&sent, Duration::seconds(60)) <= 30);
        }
    }
}
