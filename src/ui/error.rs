//! The dashboard's one error type: every failure of a request becomes a status code and a
//! JSON body `{"error": "…", "hint": "…"}` (an HTML page for the pages), never a panic.

use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A request that could not be answered, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UiError {
    #[serde(skip)]
    pub status: StatusCode,
    /// What went wrong, for a person (control characters escaped, no colours).
    pub error: String,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// Result alias of the handlers.
pub type UiResult<T> = Result<T, UiError>;

impl UiError {
    /// An error with this status and message.
    pub fn new(status: StatusCode, message: impl AsRef<str>) -> Self {
        UiError { status, error: clean(message.as_ref()), hint: None }
    }

    /// 400: the request itself is wrong.
    pub fn bad_request(message: impl AsRef<str>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404.
    pub fn not_found(message: impl AsRef<str>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 500: reading the project, its state or the runtime failed.
    pub fn internal(message: impl AsRef<str>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// The same error with a hint.
    pub fn with_hint(mut self, hint: impl AsRef<str>) -> Self {
        self.hint = Some(clean(hint.as_ref()));
        self
    }

    /// Render as an HTML page instead of JSON (for the pages).
    pub fn into_page(self) -> Response {
        let body = super::pages::error_page(&self);
        (self.status, body).into_response()
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, [(header::CACHE_CONTROL, "no-store")], axum::Json(&self)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<crate::config::Diagnostics> for UiError {
    fn from(d: crate::config::Diagnostics) -> Self {
        UiError::internal(d.to_string()).with_hint("fix the project's files; `ferry validate` lists every problem")
    }
}

impl From<crate::state::StateError> for UiError {
    fn from(e: crate::state::StateError) -> Self {
        let hint = e.hint();
        let mut err = UiError::internal(e.to_string());
        err.hint = hint.map(|h| clean(&h));
        err
    }
}

impl From<crate::pipeline::RecordError> for UiError {
    fn from(e: crate::pipeline::RecordError) -> Self {
        UiError::internal(e.to_string())
    }
}

impl From<crate::cli::CliError> for UiError {
    fn from(e: crate::cli::CliError) -> Self {
        match e {
            crate::cli::CliError::Config(d) => d.into(),
            crate::cli::CliError::Failed { message, hint } => {
                let err = UiError::internal(message);
                match hint {
                    Some(h) => err.with_hint(h),
                    None => err,
                }
            }
            crate::cli::CliError::Exit(code) => UiError::internal(format!("failed with exit code {code}")),
        }
    }
}

/// No colours, and control characters (but line breaks and tabs) shown as `\u{…}` escapes,
/// so a message cannot drive a terminal or hide text.
pub fn clean(text: &str) -> String {
    let plain = console::strip_ansi_codes(text);
    let mut out = String::with_capacity(plain.len());
    for c in plain.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// Any path no route answers: JSON under `/api/`, a page elsewhere.
pub async fn not_found(uri: Uri) -> Response {
    let err = UiError::not_found(format!("nothing at {}", uri.path())).with_hint("see docs/API.md for the endpoints");
    if uri.path().starts_with("/api/") {
        err.into_response()
    } else {
        err.into_page()
    }
}

/// A route asked with a method it does not take.
pub async fn method_not_allowed(uri: Uri) -> Response {
    UiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("{} does not take this method", uri.path()))
        .with_hint("see docs/API.md for the endpoints and their methods")
        .into_response()
}
