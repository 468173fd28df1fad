//! A message that is not one alert: a storm digest ("37 customers moved
//! into high risk in the last 10 minutes"), an import summary. Generic and
//! platform-free; [`crate::slack::message::render_notice`] and
//! [`crate::discord::message::render_notice`] turn it into each platform's
//! payload within its limits.

use perly_domain::imports::NoticeText;
use perly_domain::risk::RiskLevel;

/// A title linked to a page of Perly, a few lines, and what did not fit.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// The headline, also the notification text. Plain text: renderers
    /// escape it.
    pub title: String,
    /// One line each, shown in order; plain text. A renderer short of room
    /// drops whole lines from the end (and says so with "…").
    pub lines: Vec<String>,
    /// The last line, always shown, e.g. "+27 more in Perly".
    pub more: Option<String>,
    /// Where the title links, e.g. Perly's alert feed.
    pub link: String,
    /// Colour of the message; `None` for Perly's own colour.
    pub risk: Option<RiskLevel>,
}

/// Perly's own colour (messages that are about no risk level).
pub const PERLY_COLOR: u32 = 0x58_65_F2;

impl Notice {
    /// An import summary's text, its title linking to `link`.
    pub fn from_text(text: &NoticeText, link: String) -> Self {
        Notice {
            title: text.title.clone(),
            lines: text.lines.clone(),
            more: text.more.clone(),
            link,
            risk: text.risk_level,
        }
    }

    pub fn color(&self) -> u32 {
        self.risk.map_or(PERLY_COLOR, crate::message::risk_color)
    }

    /// The lines and `more`, each escaped with `escape`, joined with
    /// newlines within `max` characters: whole lines only, "…" standing for
    /// the lines left out, `more` always last.
    pub(crate) fn body(&self, max: usize, escape: impl Fn(&str, usize) -> String) -> String {
        let more = self.more.as_deref().map(|m| escape(m, max / 4));
        let reserved = more.as_ref().map_or(0, |m| m.chars().count() + 1) + 2;
        let budget = max.saturating_sub(reserved);
        let mut out: Vec<String> = Vec::new();
        let mut used = 0;
        for line in &self.lines {
            let line = escape(line, budget);
            let n = line.chars().count() + usize::from(!out.is_empty());
            if used + n > budget {
                out.push("…".to_owned());
                break;
            }
            used += n;
            out.push(line);
        }
        out.extend(more);
        out.join("\n")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample() -> Notice {
        Notice {
            title: "37 customers moved into high risk in the last 10 minutes".into(),
            lines: vec![
                "Top 10 by MRR: Acme Corp ($4,200.00), Globex ($3,100.00)".into(),
                "Storm guard: at most 10 messages per 10 minutes on this channel.".into(),
            ],
            more: Some("+27 more in Perly".into()),
            link: "https://app.perly.example/alerts".into(),
            risk: Some(RiskLevel::High),
        }
    }

    #[test]
    fn the_body_keeps_whole_lines_and_always_the_last() {
        let n = sample();
        let plain = |s: &str, max: usize| crate::message::truncate(s, max);
        assert_eq!(
            n.body(1000, plain),
            "Top 10 by MRR: Acme Corp ($4,200.00), Globex ($3,100.00)\n\
             Storm guard: at most 10 messages per 10 minutes on this channel.\n+27 more in Perly"
        );
        let short = n.body(80, plain);
        assert!(short.chars().count() <= 80, "{short}");
        assert!(short.ends_with("…\n+27 more in Perly"), "{short}");
        assert_eq!(n.color(), crate::message::risk_color(RiskLevel::High));
    }
}
