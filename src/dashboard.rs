//! The live dashboard: `GET /` and its assets, compiled into the binary so
//! the page works on a machine with no network beyond the hub (no CDN).
//!
//! The page (`web/dashboard/`) is built on the JavaScript client
//! (`clients/js/dist/lad-live.js`) and talks to `GET /v1/ws` like any other
//! client: it has no privileged route, and serving it needs no state.
//!
//! Every response says `Cache-Control: no-cache` with an `ETag`: a browser
//! revalidates on each load (a 304, no body) and never runs the page of an
//! older hub against a newer one. The token may be in the page's URL, so the
//! page is served with `Referrer-Policy: no-referrer` and a content security
//! policy that allows nothing but this origin.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::hash::{Hash, Hasher};
use std::sync::LazyLock;

struct Asset {
    body: &'static [u8],
    content_type: &'static str,
    etag: HeaderValue,
}

impl Asset {
    fn new(body: &'static [u8], content_type: &'static str) -> Asset {
        // Stable for a given body within one build: what an ETag needs.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        body.hash(&mut hasher);
        let etag = HeaderValue::from_str(&format!("\"{:016x}\"", hasher.finish()))
            .expect("hex is a valid header value");
        Asset {
            body,
            content_type,
            etag,
        }
    }
}

/// The demo tenant's campaign is preselected for the demo tenant, so the
/// quick start shows a funnel without anyone looking up an id.
static INDEX: LazyLock<Asset> = LazyLock::new(|| {
    let html = include_str!("../web/dashboard/index.html").replace(
        "<meta name=\"referrer\" content=\"no-referrer\">",
        &format!(
            "<meta name=\"referrer\" content=\"no-referrer\">\n  \
             <meta name=\"lad-demo-tenant\" content=\"{}\">\n  \
             <meta name=\"lad-demo-campaign\" content=\"{}\">",
            crate::demo::DEMO_TENANT,
            crate::demo::DEMO_CAMPAIGN
        ),
    );
    Asset::new(
        Box::leak(html.into_boxed_str()).as_bytes(),
        "text/html; charset=utf-8",
    )
});
static APP: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        include_bytes!("../web/dashboard/app.js"),
        "text/javascript; charset=utf-8",
    )
});
static STYLE: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        include_bytes!("../web/dashboard/style.css"),
        "text/css; charset=utf-8",
    )
});
static CLIENT: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        include_bytes!("../clients/js/dist/lad-live.js"),
        "text/javascript; charset=utf-8",
    )
});

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                   form-action 'self'; frame-ancestors 'none'";

pub fn router() -> Router {
    Router::new()
        .route("/", get(|h: HeaderMap| async move { serve(&INDEX, &h) }))
        .route(
            "/assets/app.js",
            get(|h: HeaderMap| async move { serve(&APP, &h) }),
        )
        .route(
            "/assets/style.css",
            get(|h: HeaderMap| async move { serve(&STYLE, &h) }),
        )
        .route(
            "/assets/lad-live.js",
            get(|h: HeaderMap| async move { serve(&CLIENT, &h) }),
        )
}

fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .any(|t| t.trim().trim_start_matches("W/") == asset.etag)
        });
    let headers = [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::ETAG, asset.etag.clone()),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (
        headers,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        )],
        asset.body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(asset: &Asset, etag: Option<&HeaderValue>) -> Response {
        let mut headers = HeaderMap::new();
        if let Some(tag) = etag {
            headers.insert(header::IF_NONE_MATCH, tag.clone());
        }
        serve(asset, &headers)
    }

    async fn body(res: Response) -> String {
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn serves_the_page_and_its_assets_with_their_types() {
        for (asset, ty, needle) in [
            (&*INDEX, "text/html", "<title>LAD live</title>"),
            (&*APP, "text/javascript", "from \"./lad-live.js\""),
            (&*STYLE, "text/css", ".badge"),
            (&*CLIENT, "text/javascript", "LiveClient = class"),
        ] {
            let res = get(asset, None);
            assert_eq!(res.status(), StatusCode::OK, "{needle}");
            let h = res.headers();
            assert!(h[header::CONTENT_TYPE].to_str().unwrap().starts_with(ty));
            assert_eq!(h[header::CACHE_CONTROL], "no-cache");
            assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
            assert!(body(res).await.contains(needle), "lacks {needle:?}");
        }
    }

    #[tokio::test]
    async fn the_page_names_the_demo_tenant_and_campaign() {
        let page = body(get(&INDEX, None)).await;
        for (name, value) in [
            ("lad-demo-tenant", crate::demo::DEMO_TENANT),
            ("lad-demo-campaign", crate::demo::DEMO_CAMPAIGN),
        ] {
            let meta = format!("<meta name=\"{name}\" content=\"{value}\">");
            assert!(page.contains(&meta), "no {meta}");
        }
    }

    #[tokio::test]
    async fn a_matching_etag_is_answered_not_modified_without_a_body() {
        let tag = get(&APP, None).headers()[header::ETAG].clone();
        let again = get(&APP, Some(&tag));
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(again.headers()[header::ETAG], tag);
        assert!(body(again).await.is_empty());
        let weak = HeaderValue::from_str(&format!("W/{}", tag.to_str().unwrap())).unwrap();
        assert_eq!(get(&APP, Some(&weak)).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(get(&STYLE, Some(&tag)).status(), StatusCode::OK);
    }
}
