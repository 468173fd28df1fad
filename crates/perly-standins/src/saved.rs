//! Webhooks kept in a file, so that `perly demo` run again finds the
//! webhooks it installed last time (a real Slack or Discord remembers them
//! too). Only the demo uses it; tests keep everything in memory.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One saved webhook: its URL and the channel it posts to (`#name` on
/// Slack, `Guild/name` on Discord).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SavedHook {
    pub url: String,
    pub channel: String,
}

/// Where a stand-in keeps its webhooks, if anywhere.
#[derive(Debug, Clone, Default)]
pub(crate) struct HookFile(pub Option<PathBuf>);

impl HookFile {
    pub fn load(&self) -> Vec<SavedHook> {
        let Some(path) = &self.0 else { return Vec::new() };
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Writes all webhooks (a temp file renamed over the old one).
    pub fn save(&self, hooks: &[SavedHook]) {
        let Some(path) = &self.0 else { return };
        let tmp = path.with_extension("tmp");
        let written = serde_json::to_vec_pretty(hooks)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "stand-in: cannot save webhooks");
        }
    }
}
