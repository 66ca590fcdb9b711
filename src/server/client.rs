//! A blocking client of a running codectx server (`codectx.v1.CodeContext`): one channel
//! and one small runtime kept for the life of the client, for the agent loop and the CLI.

use super::grpc::{MAX_ENCODE_BYTES, pb};
use crate::error::{Error, Result};
use pb::code_context_client::CodeContextClient;
use std::path::PathBuf;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

/// How a client trusts an `https://` server: the system's roots, plus a CA of our own
/// (a self-signed deployment), plus a client certificate when the server asks for one.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// PEM CA certificate the server's certificate must chain to (`CODECTX_TLS_CA`).
    pub ca: Option<PathBuf>,
    /// PEM client certificate and key for mutual TLS (`CODECTX_TLS_CLIENT_CERT`,
    /// `CODECTX_TLS_CLIENT_KEY`).
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl ClientTls {
    /// Reads `CODECTX_TLS_CA`, `CODECTX_TLS_CLIENT_CERT` and `CODECTX_TLS_CLIENT_KEY`.
    pub fn from_env() -> ClientTls {
        let var = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        ClientTls {
            ca: var("CODECTX_TLS_CA"),
            identity: var("CODECTX_TLS_CLIENT_CERT").zip(var("CODECTX_TLS_CLIENT_KEY")),
        }
    }
}

/// The endpoint for `url`: plaintext for `http://`, TLS (rustls) for `https://`.
pub fn endpoint(url: &str, tls: &ClientTls) -> Result<Endpoint> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| Error::invalid(format!("server URL {url:?}: {e}")))?;
    if !url.starts_with("https://") {
        return Ok(endpoint);
    }
    let read = |what: &str, path: &PathBuf| {
        std::fs::read(path)
            .map_err(|e| Error::invalid(format!("TLS {what} {}: {e}", path.display())))
    };
    let mut config = ClientTlsConfig::new().with_native_roots();
    if let Some(ca) = &tls.ca {
        config = config.ca_certificate(Certificate::from_pem(read("CA", ca)?));
    }
    if let Some((cert, key)) = &tls.identity {
        config = config.identity(Identity::from_pem(
            read("client certificate", cert)?,
            read("client key", key)?,
        ));
    }
    endpoint
        .tls_config(config)
        .map_err(|e| Error::invalid(format!("TLS for {url}: {e}")))
}

async fn connect_channel(url: &str) -> Result<Channel> {
    endpoint(url, &ClientTls::from_env())?
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| Error::Unavailable(format!("cannot reach {url}: {}", error_chain(&e))))
}

/// An error with its sources (a TLS failure hides under "transport error").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

pub struct Client {
    runtime: tokio::runtime::Runtime,
    inner: CodeContextClient<Channel>,
    token: Option<String>,
    url: String,
}

impl Client {
    /// Connects to `url` (`http://host:port`, or `https://` with [`ClientTls::from_env`]);
    /// `token` is sent as a bearer token.
    pub fn connect(url: &str, token: Option<&str>) -> Result<Client> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("cannot start the runtime: {e}")))?;
        let inner = CodeContextClient::new(runtime.block_on(connect_channel(url))?)
            .max_decoding_message_size(MAX_ENCODE_BYTES);
        Ok(Client {
            runtime,
            inner,
            token: token.map(str::to_string),
            url: url.to_string(),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn call<Q, A, F, Fut>(&mut self, message: Q, call: F) -> Result<A>
    where
        F: FnOnce(CodeContextClient<Channel>, Request<Q>) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<Response<A>, Status>>,
    {
        let mut request = Request::new(message);
        if let Some(token) = &self.token {
            let value = format!("Bearer {token}").parse().map_err(|_| {
                Error::invalid("the auth token has characters a header cannot carry")
            })?;
            request.metadata_mut().insert("authorization", value);
        }
        let client = self.inner.clone();
        self.runtime
            .block_on(call(client, request))
            .map(Response::into_inner)
            .map_err(super::status::from_status)
    }

    pub fn search(&mut self, request: pb::SearchRequest) -> Result<pb::SearchResponse> {
        self.call(request, |mut c, r| async move { c.search(r).await })
    }

    pub fn context(&mut self, request: pb::GetContextRequest) -> Result<pb::GetContextResponse> {
        self.call(request, |mut c, r| async move { c.get_context(r).await })
    }

    pub fn read_span(&mut self, request: pb::ReadSpanRequest) -> Result<pb::ReadSpanResponse> {
        self.call(request, |mut c, r| async move { c.read_span(r).await })
    }

    pub fn status(&mut self, repository: &str) -> Result<pb::StatusResponse> {
        let request = pb::StatusRequest {
            repository: repository.to_string(),
        };
        self.call(request, |mut c, r| async move { c.status(r).await })
    }

    /// Reindexes `repository` (registering it when new) and returns the final summary.
    pub fn reindex(&mut self, request: pb::ReindexRequest) -> Result<pb::ReindexSummary> {
        let mut stream = self.call(request, |mut c, r| async move { c.reindex(r).await })?;
        self.runtime.block_on(async {
            let mut summary = None;
            loop {
                match stream.message().await {
                    Ok(Some(p)) => {
                        if p.summary.is_some() {
                            summary = p.summary;
                        }
                    }
                    Ok(None) => break,
                    Err(s) => return Err(super::status::from_status(s)),
                }
            }
            summary.ok_or_else(|| {
                Error::Unavailable("the reindex stream ended without a summary".into())
            })
        })
    }
}

/// An async client for load generation: cheap to clone (one HTTP/2 channel), errors
/// reduced to the gRPC code's name.
#[derive(Clone)]
pub struct AsyncClient {
    inner: CodeContextClient<Channel>,
}

impl AsyncClient {
    pub async fn connect(url: &str) -> Result<AsyncClient> {
        let inner = CodeContextClient::new(connect_channel(url).await?)
            .max_decoding_message_size(MAX_ENCODE_BYTES);
        Ok(AsyncClient { inner })
    }

    pub async fn search(&self, request: pb::SearchRequest) -> std::result::Result<(), String> {
        let mut c = self.inner.clone();
        c.search(request)
            .await
            .map(|_| ())
            .map_err(|s| format!("{:?}", s.code()))
    }

    pub async fn context(&self, request: pb::GetContextRequest) -> std::result::Result<(), String> {
        let mut c = self.inner.clone();
        c.get_context(request)
            .await
            .map(|_| ())
            .map_err(|s| format!("{:?}", s.code()))
    }
}
