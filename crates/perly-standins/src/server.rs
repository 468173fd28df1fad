//! Binding and serving: a stand-in binds its address first (so it knows its
//! own base URL before building its state), then serves its router on the
//! current tokio runtime until [`Serving::stop`] or the runtime ends.
//! Also the small pieces of HTTP both vendors' handlers share.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A running server; cheap to clone, stopping it stops every clone.
#[derive(Clone)]
pub(crate) struct Serving {
    stop: Arc<watch::Sender<bool>>,
}

impl Serving {
    pub(crate) fn stop(&self) {
        // No receiver left means the server has already stopped.
        let _ = self.stop.send(true);
    }
}

pub(crate) async fn bind(addr: &str) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

pub(crate) fn spawn(listener: TcpListener, router: Router, vendor: &'static str) -> Serving {
    let (tx, mut rx) = watch::channel(false);
    tokio::spawn(async move {
        let stopped = async move {
            // Either a stop request or every sender dropped.
            let _ = rx.wait_for(|stop| *stop).await;
        };
        if let Err(error) = axum::serve(listener, router).with_graceful_shutdown(stopped).await {
            tracing::warn!(vendor, error = %error, "stand-in server stopped with an error");
        }
    });
    Serving { stop: Arc::new(tx) }
}

/// As [`spawn`], HTTP/1.1 only, with response header names in title case
/// (`Content-Type`, `Sforce-Locator`) as Salesforce's servers write them.
/// Header names are case-insensitive, but some clients read them from a
/// plain dictionary: airbyte's Bulk results reader looks up
/// `content-type` in `dict(response.headers)` and only works because
/// Salesforce sends `Content-Type`.
pub(crate) fn spawn_title_case(listener: TcpListener, router: Router, vendor: &'static str) -> Serving {
    let (tx, mut rx) = watch::channel(false);
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        tracing::warn!(vendor, error = %error, "stand-in could not accept a connection");
                        continue;
                    }
                },
                // A stop request, or every sender dropped.
                _ = rx.wait_for(|stop| *stop) => break,
            };
            let service = hyper_util::service::TowerToHyperService::new(router.clone());
            let mut stop = rx.clone();
            tokio::spawn(async move {
                let connection = hyper::server::conn::http1::Builder::new()
                    .title_case_headers(true)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                tokio::pin!(connection);
                let served = tokio::select! {
                    served = connection.as_mut() => served,
                    // The watch guard is dropped before the connection is awaited again.
                    () = async { drop(stop.wait_for(|stop| *stop).await) } => {
                        connection.as_mut().graceful_shutdown();
                        connection.await
                    }
                };
                if let Err(error) = served {
                    tracing::debug!(vendor, error = %error, "stand-in connection ended with an error");
                }
            });
        }
    });
    Serving { stop: Arc::new(tx) }
}

/// `http://127.0.0.1:PORT`
pub(crate) fn base_url(local: SocketAddr) -> String {
    format!("http://{local}")
}

/// A rendered page, or a plain 500 if the template fails.
pub(crate) fn page(status: StatusCode, rendered: Result<String, askama::Error>) -> Response {
    match rendered {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => {
            tracing::warn!(error = %error, "stand-in page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "page failed to render").into_response()
        }
    }
}

/// `302 Found` to `location`, as both vendors answer the consent form.
pub(crate) fn found(location: &str) -> Response {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, v);
    }
    (StatusCode::FOUND, headers).into_response()
}

/// `303 See Other` back to a stand-in page after one of its own forms.
pub(crate) fn see_other(location: &str) -> Response {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, v);
    }
    (StatusCode::SEE_OTHER, headers).into_response()
}

/// A JSON response with `status`.
pub(crate) fn json(status: StatusCode, body: &serde_json::Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}
