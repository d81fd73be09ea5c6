//! One repository on one registry over HTTP: authentication challenges, manifests and blobs.

use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode};

use super::auth::{parse_challenge, TokenResponse};
use super::{plain_http_allowed, Credentials, PullOptions, RegistryError};
use crate::digest::Digest;
use crate::manifest::{Descriptor, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, MAX_DOCUMENT_SIZE, OCI_INDEX, OCI_MANIFEST};
use crate::reference::Reference;
use crate::store::ImageStore;
use crate::ImageError;

enum Auth {
    Anonymous,
    Bearer(String),
    Basic,
}

/// One repository on one registry, with the authentication negotiated so far.
pub(super) struct Client {
    http: reqwest::Client,
    base: String,
    registry: String,
    repository: String,
    plain_http: bool,
    auth: Auth,
    credentials: Option<Credentials>,
}

impl Client {
    pub(super) fn new(reference: &Reference, opts: &PullOptions) -> Result<Self, RegistryError> {
        let plain_http = plain_http_allowed(&reference.registry, &opts.insecure_registries);
        let scheme = if plain_http { "http" } else { "https" };
        let base = format!("{scheme}://{}/v2/{}", reference.api_host(), reference.repository);
        let http = reqwest::Client::builder()
            .user_agent(concat!("flotilla/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(120))
            .build()
            .map_err(|source| RegistryError::Http { url: base.clone(), source })?;
        Ok(Client {
            http,
            base,
            registry: reference.registry.clone(),
            repository: reference.repository.clone(),
            plain_http,
            auth: Auth::Anonymous,
            credentials: opts.credentials.clone(),
        })
    }

    /// GETs `url`, answering one authentication challenge if the registry sends it.
    async fn get(&mut self, url: &str, accept: &str) -> Result<Response, RegistryError> {
        for attempt in 0..2 {
            let mut request = self.http.get(url).header(ACCEPT, accept);
            request = match (&self.auth, &self.credentials) {
                (Auth::Bearer(token), _) => request.bearer_auth(token),
                (Auth::Basic, Some(c)) => request.basic_auth(&c.username, Some(&c.password)),
                _ => request,
            };
            let response = request.send().await.map_err(|source| RegistryError::Http { url: url.to_string(), source })?;
            if response.status() == StatusCode::UNAUTHORIZED && attempt == 0 {
                let challenge = response.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                self.authenticate(&challenge).await?;
                continue;
            }
            if !response.status().is_success() {
                let status = response.status().as_u16();
                let body = response.text().await.unwrap_or_default().chars().take(512).collect();
                return Err(RegistryError::Status { url: url.to_string(), status, body });
            }
            return Ok(response);
        }
        Err(self.unauthorized("credentials were refused".to_string()))
    }

    async fn authenticate(&mut self, challenge: &str) -> Result<(), RegistryError> {
        let parsed = parse_challenge(challenge).ok_or_else(|| self.unauthorized(format!("unparsable challenge {challenge:?}")))?;
        match parsed.scheme.as_str() {
            "basic" if self.credentials.is_some() => {
                self.auth = Auth::Basic;
                Ok(())
            }
            "basic" => Err(self.unauthorized("the registry wants a username and password".to_string())),
            "bearer" => {
                let realm = parsed.params.get("realm").ok_or_else(|| self.unauthorized("bearer challenge without realm".to_string()))?;
                if realm.starts_with("http://") && self.credentials.is_some() && !self.plain_http {
                    return Err(self.unauthorized(format!("refusing to send credentials to plain-HTTP realm {realm}")));
                }
                let default_scope = format!("repository:{}:pull", self.repository);
                let scope = parsed.params.get("scope").unwrap_or(&default_scope);
                let mut query = vec![("scope", scope.as_str())];
                if let Some(service) = parsed.params.get("service") {
                    query.push(("service", service));
                }
                let mut request = self.http.get(realm).query(&query);
                if let Some(c) = &self.credentials {
                    request = request.basic_auth(&c.username, Some(&c.password));
                }
                let http_err = |source| RegistryError::Http { url: realm.clone(), source };
                let response = request.send().await.map_err(http_err)?;
                if !response.status().is_success() {
                    return Err(self.unauthorized(format!("token endpoint {realm} answered HTTP {}", response.status())));
                }
                let body: TokenResponse = response.json().await.map_err(http_err)?;
                let token = body.token.or(body.access_token).filter(|t| !t.is_empty());
                self.auth = Auth::Bearer(token.ok_or_else(|| self.unauthorized(format!("token endpoint {realm} returned no token")))?);
                Ok(())
            }
            other => Err(self.unauthorized(format!("unsupported auth scheme {other:?}"))),
        }
    }

    fn unauthorized(&self, reason: String) -> RegistryError {
        RegistryError::Unauthorized { registry: self.registry.clone(), reason }
    }

    /// Fetches a manifest or index, checking it against `pinned` when the reference has a digest.
    pub(super) async fn manifest(&mut self, selector: &str, pinned: Option<&Digest>) -> Result<(Vec<u8>, String), ImageError> {
        let url = format!("{}/manifests/{selector}", self.base);
        let accept = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST].join(", ");
        let mut response = self.get(&url, &accept).await?;
        let media_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_string())
            .unwrap_or_default();
        let too_large = || RegistryError::TooLarge { url: url.clone(), limit: MAX_DOCUMENT_SIZE };
        if response.content_length().is_some_and(|n| n > MAX_DOCUMENT_SIZE) {
            return Err(too_large().into());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|source| RegistryError::Http { url: url.clone(), source })? {
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > MAX_DOCUMENT_SIZE {
                return Err(too_large().into());
            }
        }
        if let Some(expected) = pinned {
            let actual = Digest::of(&bytes);
            if actual != *expected {
                return Err(RegistryError::DigestMismatch { url, expected: expected.clone(), actual }.into());
            }
        }
        Ok((bytes, media_type))
    }

    /// Downloads a blob into the store unless it is there already; verified before it is kept.
    pub(super) async fn fetch_blob(&mut self, store: &ImageStore, desc: &Descriptor) -> Result<(), ImageError> {
        if store.blobs.contains(desc) {
            return Ok(());
        }
        let url = format!("{}/blobs/{}", self.base, desc.digest);
        let mut response = self.get(&url, "*/*").await?;
        let mut writer = store.blobs.writer(desc)?;
        while let Some(chunk) = response.chunk().await.map_err(|source| RegistryError::Http { url: url.clone(), source })? {
            writer.write_chunk(&chunk)?;
        }
        Ok(writer.commit()?)
    }
}
