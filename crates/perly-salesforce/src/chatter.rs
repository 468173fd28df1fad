//! Builds the body of a Chatter feed element post (a `FeedItem` on a record
//! feed) for [`crate::Client::post_feed_element`]. A post is a list of
//! message segments: plain text, @-mentions, and markup begin/end pairs
//! (bold, paragraphs, …) that must nest properly. Pure.

use serde_json::{json, Value};

/// Rich-text markup a segment pair can open and close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Markup {
    Bold,
    Italic,
    Underline,
    Paragraph,
    UnorderedList,
    ListItem,
}

impl Markup {
    fn name(self) -> &'static str {
        match self {
            Markup::Bold => "Bold",
            Markup::Italic => "Italic",
            Markup::Underline => "Underline",
            Markup::Paragraph => "Paragraph",
            Markup::UnorderedList => "UnorderedList",
            Markup::ListItem => "ListItem",
        }
    }
}

/// One message segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Text(String),
    /// @-mention of a user or group by id.
    Mention(String),
    Begin(Markup),
    End(Markup),
}

impl Segment {
    fn to_json(&self) -> Value {
        match self {
            Segment::Text(text) => json!({"type": "Text", "text": text}),
            Segment::Mention(id) => json!({"type": "Mention", "id": id}),
            Segment::Begin(m) => json!({"type": "MarkupBegin", "markupType": m.name()}),
            Segment::End(m) => json!({"type": "MarkupEnd", "markupType": m.name()}),
        }
    }
}

/// A feed post on a record (an Account) or user feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedPost {
    /// The record whose feed gets the post.
    pub subject_id: String,
    pub segments: Vec<Segment>,
}

impl FeedPost {
    pub fn new(subject_id: impl Into<String>) -> FeedPost {
        FeedPost {
            subject_id: subject_id.into(),
            segments: Vec::new(),
        }
    }

    /// Appends plain text.
    pub fn text(mut self, text: impl Into<String>) -> FeedPost {
        self.segments.push(Segment::Text(text.into()));
        self
    }

    /// Appends an @-mention.
    pub fn mention(mut self, user_id: impl Into<String>) -> FeedPost {
        self.segments.push(Segment::Mention(user_id.into()));
        self
    }

    /// Opens `markup`; close it with [`FeedPost::end`].
    pub fn begin(mut self, markup: Markup) -> FeedPost {
        self.segments.push(Segment::Begin(markup));
        self
    }

    /// Closes `markup`.
    pub fn end(mut self, markup: Markup) -> FeedPost {
        self.segments.push(Segment::End(markup));
        self
    }

    /// Appends bold text.
    pub fn bold(self, text: impl Into<String>) -> FeedPost {
        self.begin(Markup::Bold).text(text).end(Markup::Bold)
    }

    /// Appends a paragraph of plain text.
    pub fn paragraph(self, text: impl Into<String>) -> FeedPost {
        self.begin(Markup::Paragraph).text(text).end(Markup::Paragraph)
    }

    /// The `POST /chatter/feed-elements` body.
    pub fn to_body(&self) -> Value {
        json!({
            "feedElementType": "FeedItem",
            "subjectId": self.subject_id,
            "body": {
                "messageSegments": self.segments.iter().map(Segment::to_json).collect::<Vec<_>>(),
            },
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::fixtures::spec;

    #[test]
    fn builds_the_perly_post_of_the_spec() {
        let file: Value =
            serde_json::from_str(&spec("chatter/feed_element_post_request_perly_constructed.json")).unwrap();
        let post = FeedPost::new("0015e00000AbCdEAAV")
            .bold("Perly: health score 60 -> 42 (HIGH risk)")
            .paragraph("Login frequency down 60%. Payment failed twice. Support tickets up.")
            .begin(Markup::Paragraph)
            .text("Suggested action: schedule a check-in call. ")
            .mention("0055e000001AbCdAAA")
            .end(Markup::Paragraph);
        assert_eq!(post.to_body(), file["body"]);
    }

    #[test]
    fn an_empty_post_has_no_segments() {
        let body = FeedPost::new("001").to_body();
        assert_eq!(body["body"]["messageSegments"], json!([]));
        assert_eq!(body["feedElementType"], "FeedItem");
    }
}
