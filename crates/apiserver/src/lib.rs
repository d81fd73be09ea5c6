//! The API server: Kubernetes-shaped REST over the store, with authentication, authorization,
//! admission (defaults and validation), list/watch, and TLS.
#![forbid(unsafe_code)]

pub mod admission;
pub mod agents;
pub mod auth;
pub mod discovery;
pub mod error;
pub mod flows;
#[doc(hidden)]
pub mod fuzzing;
pub mod handlers;
pub mod imagegate;
pub mod join;
pub mod nodepki;
pub mod noderestriction;
pub mod registry;
pub mod request;
pub mod server;
pub mod tls;
pub mod watch;

pub use auth::{Authenticator, UserInfo};
pub use error::ApiError;
pub use registry::{DeleteOptions, ListFilter, Registry, ServiceRanges};
pub use server::{serve, ServerConfig};
