//! Reading an answer's body with a ceiling. A vendor (or whatever answers
//! in its place) decides how much it sends; Perly decides how much it
//! reads. [`read_capped`] reads chunk by chunk and stops at the cap, so a
//! body that never ends, or one whose `Content-Length` lies, costs at most
//! the cap in memory.

/// Why a body was not read whole.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body is larger than `limit` bytes (announced or counted).
    #[error("the answer is larger than {} (Perly stops reading there)", size(*limit))]
    TooLarge { limit: usize },
    /// The connection failed mid-body.
    #[error("the answer broke off")]
    Transport(#[source] reqwest::Error),
}

/// `n` bytes in words: "8 MiB", "512 KiB", "100 bytes".
pub fn size(n: usize) -> String {
    const MIB: usize = 1024 * 1024;
    match n {
        n if n >= MIB && n % MIB == 0 => format!("{} MiB", n / MIB),
        n if n >= 1024 && n % 1024 == 0 => format!("{} KiB", n / 1024),
        n => format!("{n} bytes"),
    }
}

/// The whole body, if it is at most `limit` bytes.
pub async fn read_capped(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    let announced = resp.content_length();
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    // Trust the announced length for the first allocation only.
    let mut body = Vec::with_capacity(announced.map_or(0, |n| n as usize).min(limit));
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The body as text (invalid UTF-8 replaced), if it is at most `limit` bytes.
pub async fn read_text_capped(resp: reqwest::Response, limit: usize) -> Result<String, BodyError> {
    let bytes = read_capped(resp, limit).await?;
    Ok(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use futures::stream;

    /// A server whose `/endless` streams 1 KiB chunks without a length
    /// (until the client hangs up), `/small` answers 10 bytes and `/big`
    /// 5,000 with their `Content-Length`.
    async fn server() -> String {
        let app = Router::new()
            .route(
                "/endless",
                get(|| async {
                    let chunks = stream::repeat_with(|| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; 1024])));
                    Body::from_stream(chunks)
                }),
            )
            .route("/small", get(|| async { "0123456789" }))
            .route("/big", get(|| async { "y".repeat(5000) }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn an_endless_body_stops_at_the_cap() {
        let base = server().await;
        let resp = reqwest::get(format!("{base}/endless")).await.unwrap();
        assert!(resp.content_length().is_none(), "streamed without a length");
        let e = read_capped(resp, 64 * 1024).await.unwrap_err();
        assert!(matches!(e, BodyError::TooLarge { limit: 65_536 }), "{e}");
        assert_eq!(
            e.to_string(),
            "the answer is larger than 64 KiB (Perly stops reading there)"
        );
    }

    #[tokio::test]
    async fn an_announced_length_over_the_cap_is_refused_before_reading() {
        let base = server().await;
        let resp = reqwest::get(format!("{base}/big")).await.unwrap();
        assert_eq!(resp.content_length(), Some(5000));
        assert!(matches!(
            read_capped(resp, 4096).await,
            Err(BodyError::TooLarge { limit: 4096 })
        ));
    }

    #[tokio::test]
    async fn a_body_within_the_cap_is_read_whole() {
        let base = server().await;
        let resp = reqwest::get(format!("{base}/small")).await.unwrap();
        assert_eq!(read_text_capped(resp, 10).await.unwrap(), "0123456789");
        let resp = reqwest::get(format!("{base}/big")).await.unwrap();
        assert_eq!(read_capped(resp, 5000).await.unwrap().len(), 5000);
    }

    #[test]
    fn sizes_read_as_words() {
        assert_eq!(size(64 * 1024 * 1024), "64 MiB");
        assert_eq!(size(8 * 1024 * 1024), "8 MiB");
        assert_eq!(size(512 * 1024), "512 KiB");
        assert_eq!(size(100), "100 bytes");
    }
}
