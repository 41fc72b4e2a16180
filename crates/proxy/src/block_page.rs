//! The 403 response for blocked requests: HTML for clients that accept it,
//! plain text otherwise. Every value it echoes is escaped, and it is never
//! cached.

use hudsucker::hyper::header::{HeaderValue, ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use hudsucker::hyper::{HeaderMap, Response, StatusCode};
use hudsucker::Body;

/// The contact text shown when the administrator sets none.
pub const DEFAULT_CONTACT: &str = "Access to this site is blocked by company policy. If you \
     need it for your work, contact IT support and explain the business reason; they can \
     grant access.";

/// The values the block page shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockInfo<'a> {
    /// The blocked host.
    pub host: &'a str,
    /// The category of the deciding rule.
    pub category: &'a str,
    /// When the request was blocked, as shown to the user.
    pub time: &'a str,
    /// The administrator's contact text.
    pub contact: &'a str,
}

/// Builds the block page response, choosing HTML or text by `Accept`.
pub fn response(request_headers: &HeaderMap, info: &BlockInfo<'_>) -> Response<Body> {
    let (content_type, body) = if accepts_html(request_headers) {
        ("text/html; charset=utf-8", html(info))
    } else {
        ("text/plain; charset=utf-8", text(info))
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::FORBIDDEN;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-webwarden", HeaderValue::from_static("blocked"));
    response
}

fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| {
            let media = item.split(';').next().unwrap_or_default().trim();
            media.eq_ignore_ascii_case("text/html")
        })
}

fn text(info: &BlockInfo<'_>) -> String {
    format!(
        "Blocked by webwarden\n\nHost: {}\nCategory: {}\nTime: {}\n\n{}\n",
        info.host, info.category, info.time, info.contact
    )
}

fn html(info: &BlockInfo<'_>) -> String {
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Blocked: {host}</title>
<style>
body {{ font-family: system-ui, sans-serif; background: #f4f4f5; color: #18181b; margin: 0; }}
main {{ max-width: 36rem; margin: 10vh auto; background: #fff; padding: 2rem 2.5rem;
        border-radius: 12px; box-shadow: 0 2px 12px rgba(0,0,0,.08); }}
h1 {{ color: #b91c1c; font-size: 1.5rem; margin-top: 0; }}
dl {{ display: grid; grid-template-columns: max-content 1fr; gap: .4rem 1rem; }}
dt {{ font-weight: 600; }}
dd {{ margin: 0; overflow-wrap: anywhere; }}
</style>
</head>
<body>
<main>
<h1>This site is blocked</h1>
<dl>
<dt>Host</dt><dd id="host">{host}</dd>
<dt>Category</dt><dd id="category">{category}</dd>
<dt>Time</dt><dd id="time">{time}</dd>
</dl>
<p id="contact">{contact}</p>
</main>
</body>
</html>
"#,
        host = escape(info.host),
        category = escape(info.category),
        time = escape(info.time),
        contact = escape(info.contact),
    )
}

/// Formats a time for the page, to the second: `2026-12-04 17:34:24 UTC`.
pub fn display_time(time: time::OffsetDateTime) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    time.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_else(|_| time.to_string())
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn info<'a>(category: &'a str, contact: &'a str) -> BlockInfo<'a> {
        BlockInfo {
            host: "bet.example",
            category,
            time: "2026-12-04T10:00:00Z",
            contact,
        }
    }

    async fn body_text(response: Response<Body>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn html_page_escapes_every_value() {
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("text/html,application/xhtml+xml"),
        );
        let page = info("<script>alert(1)</script>", "Call \"IT\" & ask <now>");
        let response = response(&headers, &page);
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
        assert_eq!(response.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        let body = body_text(response).await;
        assert!(!body.contains("<script>"));
        assert!(body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(body.contains("Call &quot;IT&quot; &amp; ask &lt;now&gt;"));
        assert!(body.contains("bet.example"));
        assert!(body.contains("2026-12-04T10:00:00Z"));
    }

    #[test]
    fn display_time_stops_at_seconds() {
        let time = time::macros::datetime!(2026-12-04 17:34:24.384 UTC);
        assert_eq!(display_time(time), "2026-12-04 17:34:24 UTC");
    }

    #[tokio::test]
    async fn plain_text_without_html_accept() {
        let headers = HeaderMap::new();
        let response = response(&headers, &info("Gambling", DEFAULT_CONTACT));
        assert_eq!(
            response.headers()[CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        let body = body_text(response).await;
        assert!(body.contains("Host: bet.example"));
        assert!(body.contains("Category: Gambling"));
        assert!(body.contains("contact IT support"));
    }
}
