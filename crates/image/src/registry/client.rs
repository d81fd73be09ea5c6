//! One repository on one registry over HTTP: authentication challenges, manifests and blobs.

use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};

use super::auth::{parse_challenge, TokenResponse};
use super::{plain_http_allowed, Credentials, PullOptions, RegistryError};
use crate::blobs::BlobError;
use crate::digest::Digest;
use crate::manifest::{Descriptor, Index, ManifestError, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, MAX_DOCUMENT_SIZE, OCI_INDEX, OCI_MANIFEST};
use crate::reference::Reference;
use crate::store::ImageStore;
use crate::ImageError;

enum Auth {
    Anonymous,
    Bearer(String),
    Basic,
}

/// One repository on one registry, with the authentication negotiated so far: manifests, blobs,
/// referrers, and pushing them.
pub struct Remote {
    http: reqwest::Client,
    base: String,
    registry: String,
    repository: String,
    plain_http: bool,
    auth: Auth,
    credentials: Option<Credentials>,
    push: bool,
}

impl Remote {
    /// A client for `reference`'s repository that only reads.
    pub fn new(reference: &Reference, opts: &PullOptions) -> Result<Self, RegistryError> {
        let plain_http = plain_http_allowed(&reference.registry, &opts.insecure_registries);
        let scheme = if plain_http { "http" } else { "https" };
        let base = format!("{scheme}://{}/v2/{}", reference.api_host(), reference.repository);
        let http = reqwest::Client::builder()
            .user_agent(concat!("flotilla/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(120))
            .build()
            .map_err(|source| RegistryError::Http { method: "GET".to_string(), url: base.clone(), source })?;
        Ok(Remote {
            http,
            base,
            registry: reference.registry.clone(),
            repository: reference.repository.clone(),
            plain_http,
            auth: Auth::Anonymous,
            credentials: opts.credentials.clone(),
            push: false,
        })
    }

    /// GETs `url`, answering one authentication challenge if the registry sends it.
    async fn get(&mut self, url: &str, accept: &str) -> Result<Response, RegistryError> {
        self.send(Method::GET, url, accept, None).await
    }

    /// Sends a request, answering one authentication challenge if the registry sends it; an
    /// error status becomes [`RegistryError::Status`].
    async fn send(&mut self, method: Method, url: &str, accept: &str, body: Option<(&str, &[u8])>) -> Result<Response, RegistryError> {
        for attempt in 0..2 {
            let mut request = self.http.request(method.clone(), url).header(ACCEPT, accept);
            if let Some((content_type, bytes)) = body {
                request = request.header(CONTENT_TYPE, content_type).body(bytes.to_vec());
            }
            request = match (&self.auth, &self.credentials) {
                (Auth::Bearer(token), _) => request.bearer_auth(token),
                (Auth::Basic, Some(c)) => request.basic_auth(&c.username, Some(&c.password)),
                _ => request,
            };
            let http_err = |source| RegistryError::Http { method: method.to_string(), url: url.to_string(), source };
            let response = request.send().await.map_err(http_err)?;
            if response.status() == StatusCode::UNAUTHORIZED && attempt == 0 {
                let challenge = response.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                self.authenticate(&challenge).await?;
                continue;
            }
            if !response.status().is_success() {
                let status = response.status().as_u16();
                let body = response.text().await.unwrap_or_default().chars().take(512).collect();
                return Err(RegistryError::Status { method: method.to_string(), url: url.to_string(), status, body });
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
                let actions = if self.push { "pull,push" } else { "pull" };
                let default_scope = format!("repository:{}:{actions}", self.repository);
                let scope = parsed.params.get("scope").unwrap_or(&default_scope);
                let mut query = vec![("scope", scope.as_str())];
                if let Some(service) = parsed.params.get("service") {
                    query.push(("service", service));
                }
                let mut request = self.http.get(realm).query(&query);
                if let Some(c) = &self.credentials {
                    request = request.basic_auth(&c.username, Some(&c.password));
                }
                let http_err = |source| RegistryError::Http { method: "GET".to_string(), url: realm.clone(), source };
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

    /// A client for `reference`'s repository that may also push (bearer tokens are asked for
    /// `pull,push`).
    pub fn for_push(reference: &Reference, opts: &PullOptions) -> Result<Self, RegistryError> {
        Ok(Remote { push: true, ..Self::new(reference, opts)? })
    }

    /// Fetches a manifest or index, checking it against `pinned` when the reference has a digest.
    pub async fn manifest(&mut self, selector: &str, pinned: Option<&Digest>) -> Result<(Vec<u8>, String), ImageError> {
        let url = format!("{}/manifests/{selector}", self.base);
        let accept = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST].join(", ");
        let response = self.get(&url, &accept).await?;
        let media_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_string())
            .unwrap_or_default();
        let bytes = Self::limited_body(response, &url, MAX_DOCUMENT_SIZE).await?;
        if let Some(expected) = pinned {
            let actual = Digest::of(&bytes);
            if actual != *expected {
                return Err(RegistryError::DigestMismatch { url, expected: expected.clone(), actual }.into());
            }
        }
        Ok((bytes, media_type))
    }

    /// Downloads a blob into the store unless it is there already; verified before it is kept.
    pub(crate) async fn fetch_blob(&mut self, store: &ImageStore, desc: &Descriptor) -> Result<(), ImageError> {
        if store.blobs.contains(desc) {
            return Ok(());
        }
        let url = format!("{}/blobs/{}", self.base, desc.digest);
        let mut response = self.get(&url, "*/*").await?;
        let mut writer = store.blobs.writer(desc)?;
        while let Some(chunk) = response.chunk().await.map_err(|source| RegistryError::Http { method: "GET".to_string(), url: url.clone(), source })? {
            writer.write_chunk(&chunk)?;
        }
        Ok(writer.commit()?)
    }
}

impl Remote {
    /// Fetches a small blob (a signature payload, a bundle) into memory, refusing more than
    /// `limit` bytes and checking it against its descriptor.
    pub async fn blob(&mut self, desc: &Descriptor, limit: u64) -> Result<Vec<u8>, ImageError> {
        let url = format!("{}/blobs/{}", self.base, desc.digest);
        if desc.size > limit {
            return Err(RegistryError::TooLarge { url, limit }.into());
        }
        let response = self.get(&url, "*/*").await?;
        let bytes = Self::limited_body(response, &url, desc.size).await?;
        let actual = Digest::of(&bytes);
        if bytes.len() as u64 != desc.size || actual != desc.digest {
            return Err(BlobError::Corrupt {
                digest: desc.digest.clone(),
                expected_size: desc.size,
                actual_size: bytes.len() as u64,
                actual_digest: actual.to_string(),
            }
            .into());
        }
        Ok(bytes)
    }

    /// Uploads `bytes` as a blob (monolithic upload) unless the registry has it, and returns its
    /// descriptor.
    pub async fn push_blob(&mut self, media_type: &str, bytes: &[u8]) -> Result<Descriptor, RegistryError> {
        let desc = Descriptor::new(media_type, Digest::of(bytes), bytes.len() as u64);
        let url = format!("{}/blobs/{}", self.base, desc.digest);
        match self.send(Method::HEAD, &url, "*/*", None).await {
            Ok(_) => return Ok(desc),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        let start = format!("{}/blobs/uploads/", self.base);
        let response = self.send(Method::POST, &start, "*/*", None).await?;
        let location = response.headers().get(LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        if location.is_empty() {
            return Err(RegistryError::Status {
                method: "POST".to_string(),
                url: start,
                status: response.status().as_u16(),
                body: "no Location for the upload".to_string(),
            });
        }
        let mut upload = self.absolute(&location);
        upload.push(if upload.contains('?') { '&' } else { '?' });
        upload.push_str(&format!("digest={}", desc.digest));
        self.send(Method::PUT, &upload, "*/*", Some(("application/octet-stream", bytes))).await?;
        Ok(desc)
    }

    /// PUTs a manifest under `selector` (a tag, or its digest). Returns its digest, and whether
    /// the registry indexed its `subject` for the referrers API (the `OCI-Subject` header).
    pub async fn push_manifest(&mut self, selector: &str, media_type: &str, bytes: &[u8]) -> Result<(Digest, bool), RegistryError> {
        let url = format!("{}/manifests/{selector}", self.base);
        let response = self.send(Method::PUT, &url, "*/*", Some((media_type, bytes))).await?;
        Ok((Digest::of(bytes), response.headers().contains_key("oci-subject")))
    }

    /// The referrers of `digest` (OCI 1.1): the registry's referrers API when it has one, else
    /// the fallback tag `sha256-<hex>`. `None` when neither knows of any.
    pub async fn referrers(&mut self, digest: &Digest) -> Result<Option<Index>, ImageError> {
        let url = format!("{}/referrers/{digest}", self.base);
        let bytes = match self.get(&url, OCI_INDEX).await {
            Ok(response) => Some(Self::limited_body(response, &url, MAX_DOCUMENT_SIZE).await?),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e.into()),
        };
        let bytes = match bytes {
            Some(bytes) => bytes,
            None => match self.manifest(&referrers_tag(digest), None).await {
                Ok((bytes, _)) => bytes,
                Err(ImageError::Registry(e)) if e.is_not_found() => return Ok(None),
                Err(e) => return Err(e),
            },
        };
        let index: Index =
            serde_json::from_slice(&bytes).map_err(|e| ManifestError::Malformed { what: "referrers index", digest: digest.to_string(), source: e })?;
        Ok(Some(index))
    }

    /// Reads a response body into memory, refusing more than `limit` bytes.
    async fn limited_body(mut response: Response, url: &str, limit: u64) -> Result<Vec<u8>, RegistryError> {
        let too_large = || RegistryError::TooLarge { url: url.to_string(), limit };
        if response.content_length().is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|source| RegistryError::Http { method: "GET".to_string(), url: url.to_string(), source })? {
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > limit {
                return Err(too_large());
            }
        }
        Ok(bytes)
    }

    /// Turns a `Location` header (absolute, or a path on the registry) into a URL.
    fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            return location.to_string();
        }
        let origin_end = self.base.find("/v2/").unwrap_or(self.base.len());
        format!("{}{location}", &self.base[..origin_end])
    }
}

/// The tag the OCI 1.1 referrers fallback keeps `digest`'s referrers index under.
pub fn referrers_tag(digest: &Digest) -> String {
    format!("sha256-{}", digest.hex())
}
