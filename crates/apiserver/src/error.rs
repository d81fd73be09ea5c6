//! API errors and their Kubernetes `Status` bodies.

use api::k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusCause, StatusDetails};
use api::{FieldErrors, ResourceType};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use store::StoreError;

/// Everything a request can fail with; each maps to one HTTP code and `Status.reason`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 404: the object or path does not exist.
    #[error("{kind} \"{name}\" not found")]
    NotFound { kind: String, name: String },
    /// 409: create of an existing name.
    #[error("{kind} \"{name}\" already exists")]
    AlreadyExists { kind: String, name: String },
    /// 409: the update was based on an old resourceVersion.
    #[error("Operation cannot be fulfilled on {kind} \"{name}\": the object has been modified; please apply your changes to the latest version and try again")]
    Conflict { kind: String, name: String },
    /// 422: the object failed validation.
    #[error("{kind} \"{name}\" is invalid: {errors}")]
    Invalid { kind: String, name: String, errors: FieldErrors },
    /// 400: the body could not be decoded (syntax, unknown field, wrong type) or the request is
    /// malformed.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no or unknown credentials.
    #[error("Unauthorized: {0}")]
    Unauthorized(String),
    /// 403: the user may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// 405: the verb is not supported on this path.
    #[error("the server does not allow this method on the requested resource: {0}")]
    MethodNotAllowed(String),
    /// 410: a watch asked for history that was compacted.
    #[error("too old resource version: {0}")]
    Gone(String),
    /// 413: the body is over the limit.
    #[error("request entity too large: the limit is {limit} bytes")]
    TooLarge { limit: usize },
    /// 415: a body type the server does not read.
    #[error("unsupported media type \"{0}\"; send application/json or application/yaml")]
    UnsupportedMediaType(String),
    /// 500: the store or the server failed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status code.
    pub fn code(&self) -> StatusCode {
        match self {
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::AlreadyExists { .. } | ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable `Status.reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } => "Conflict",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Unauthorized(_) => "Unauthorized",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::MethodNotAllowed(_) => "MethodNotAllowed",
            ApiError::Gone(_) => "Expired",
            ApiError::TooLarge { .. } => "RequestEntityTooLarge",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::Internal(_) => "InternalError",
        }
    }

    /// The Kubernetes `Status` body.
    pub fn status(&self) -> Status {
        let details = match self {
            ApiError::NotFound { kind, name } | ApiError::AlreadyExists { kind, name } | ApiError::Conflict { kind, name } => {
                Some(StatusDetails { kind: Some(kind.clone()), name: Some(name.clone()), ..Default::default() })
            }
            ApiError::Invalid { kind, name, errors } => Some(StatusDetails {
                kind: Some(kind.clone()),
                name: Some(name.clone()),
                causes: Some(
                    errors
                        .0
                        .iter()
                        .map(|e| StatusCause { field: Some(e.path.clone()), message: Some(e.message.clone()), reason: Some("FieldValueInvalid".into()) })
                        .collect(),
                ),
                ..Default::default()
            }),
            _ => None,
        };
        Status {
            status: Some("Failure".into()),
            message: Some(self.to_string()),
            reason: Some(self.reason().into()),
            code: Some(self.code().as_u16() as i32),
            details,
            ..Default::default()
        }
    }

    /// Maps a store error on the object `name` of type `rt`.
    pub fn from_store(rt: &ResourceType, name: &str, e: StoreError) -> ApiError {
        let kind = rt.plural.to_string();
        match e {
            StoreError::NotFound { .. } => ApiError::NotFound { kind, name: name.to_string() },
            StoreError::AlreadyExists { .. } => ApiError::AlreadyExists { kind, name: name.to_string() },
            StoreError::Conflict { .. } => ApiError::Conflict { kind, name: name.to_string() },
            StoreError::Compacted { requested, oldest } => ApiError::Gone(format!("{requested} (oldest available {oldest})")),
            StoreError::FutureRevision { requested, current } => {
                ApiError::BadRequest(format!("resourceVersion {requested} is newer than the server's {current}"))
            }
            StoreError::Backend(m) => ApiError::Internal(m),
        }
    }
}

/// Serializes a `Status` with its `kind` and `apiVersion`.
pub fn status_json(status: &Status) -> serde_json::Value {
    let mut v = serde_json::to_value(status).unwrap_or_default();
    v["kind"] = "Status".into();
    v["apiVersion"] = "v1".into();
    v["metadata"] = serde_json::json!({});
    v
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.code(), axum::Json(status_json(&self.status()))).into_response();
        if matches!(self, ApiError::TooLarge { .. }) {
            // The rest of the body was never read: the connection cannot carry another request.
            response.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
        }
        response
    }
}
