//! The Qdrant backend of [`VectorStore`], for deployments that outgrow one machine: one
//! collection per repository and model on a Qdrant server, through qdrant-client (gRPC).
//! Points carry the chunk id, path and language as payload (path and language indexed as
//! keywords, for filtered search); point ids are 64-bit hashes of the chunk id. Every write
//! waits for the server to apply it. Only this module names qdrant-client.

use super::vectors::{VectorFilter, VectorHit, VectorPoint, VectorStore, point_key};
use crate::error::{Error, Result};
use qdrant_client::Qdrant;
use qdrant_client::qdrant::{
    Condition, CountPointsBuilder, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder,
    DeletePointsBuilder, Distance, FieldType, Filter, PointId, PointStruct, PointsIdsList,
    ScrollPointsBuilder, SearchPointsBuilder, UpsertPointsBuilder, Value, VectorParamsBuilder,
    value::Kind,
};
use std::collections::HashSet;

/// Where the server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QdrantConfig {
    /// The gRPC URL (`http://qdrant:6334`).
    pub url: String,
    pub api_key: Option<String>,
}

/// Points per upsert request.
const UPSERT_BATCH: usize = 256;
/// Points per scroll page.
const SCROLL_PAGE: u32 = 1024;

pub struct QdrantStore {
    client: Qdrant,
    /// Always `Some` until dropped (taken there, to shut down without blocking).
    runtime: Option<tokio::runtime::Runtime>,
    url: String,
    collection: String,
    model_id: String,
    dims: usize,
}

fn text(v: Option<&Value>) -> Option<&str> {
    match v.and_then(|v| v.kind.as_ref()) {
        Some(Kind::StringValue(s)) => Some(s),
        _ => None,
    }
}

impl QdrantStore {
    /// Connects and makes sure `collection` exists (created with `dims` and cosine distance,
    /// path and language indexed). The caller blocks: never call from an async task.
    pub fn open(
        config: &QdrantConfig,
        collection: &str,
        model_id: &str,
        dims: usize,
    ) -> Result<QdrantStore> {
        let client = Qdrant::from_url(&config.url)
            .api_key(config.api_key.clone())
            .timeout(std::time::Duration::from_secs(30))
            // A server that is away must not hold a search for long: the dense lane then
            // degrades to lexical.
            .connect_timeout(std::time::Duration::from_secs(2))
            .skip_compatibility_check()
            .build()
            .map_err(|e| Error::Unavailable(format!("qdrant {}: {e}", config.url)))?;
        // One worker of its own: the channel's connection task keeps running between calls,
        // and calls from several threads (searches during a reindex) share it.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("codectx-qdrant")
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("cannot start the qdrant runtime: {e}")))?;
        let store = QdrantStore {
            client,
            runtime: Some(runtime),
            url: config.url.clone(),
            collection: collection.to_string(),
            model_id: model_id.to_string(),
            dims,
        };
        let exists = store.call(store.client.collection_exists(collection))?;
        if !exists {
            store.call(
                store.client.create_collection(
                    CreateCollectionBuilder::new(collection)
                        .vectors_config(VectorParamsBuilder::new(dims as u64, Distance::Cosine)),
                ),
            )?;
            for field in ["path", "language"] {
                store.call(
                    store.client.create_field_index(
                        CreateFieldIndexCollectionBuilder::new(
                            collection,
                            field,
                            FieldType::Keyword,
                        )
                        .wait(true),
                    ),
                )?;
            }
        }
        Ok(store)
    }

    /// Deletes the collection (a repository removed from the registry, a test's scratch
    /// collection); a collection that is not there is not an error.
    pub fn drop_collection(self) -> Result<()> {
        self.call(self.client.delete_collection(self.collection.as_str()))
            .map(|_| ())
    }

    /// Runs one request to completion; a failure names the server and the collection.
    fn call<T>(
        &self,
        request: impl std::future::Future<Output = std::result::Result<T, qdrant_client::QdrantError>>,
    ) -> Result<T> {
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| Error::Internal("the qdrant runtime is gone".into()))?;
        runtime.block_on(request).map_err(|e| {
            Error::Unavailable(format!("qdrant {} ({}): {e}", self.url, self.collection))
        })
    }

    fn check_dims(&self, points: &[VectorPoint]) -> Result<()> {
        match points.iter().find(|p| p.vector.len() != self.dims) {
            Some(p) => Err(Error::invalid(format!(
                "vector of chunk {}: {} dimensions, the collection holds {}",
                p.id,
                p.vector.len(),
                self.dims
            ))),
            None => Ok(()),
        }
    }
}

impl Drop for QdrantStore {
    /// The engine may be dropped inside an async task (a server shutting down), where a
    /// runtime must not block: shut down in the background.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl VectorStore for QdrantStore {
    fn model(&self) -> (String, usize) {
        (self.model_id.clone(), self.dims)
    }

    fn upsert(&self, points: &[VectorPoint]) -> Result<()> {
        self.check_dims(points)?;
        for batch in points.chunks(UPSERT_BATCH) {
            let structs: Vec<PointStruct> = batch
                .iter()
                .map(|p| {
                    let mut payload = qdrant_client::Payload::new();
                    payload.insert("chunk_id", p.id.clone());
                    payload.insert("path", p.path.clone());
                    payload.insert("language", p.language.name().to_string());
                    PointStruct::new(point_key(&p.id), p.vector.clone(), payload)
                })
                .collect();
            self.call(
                self.client
                    .upsert_points(UpsertPointsBuilder::new(&self.collection, structs).wait(true)),
            )?;
        }
        Ok(())
    }

    fn delete_ids(&self, ids: &[String]) -> Result<()> {
        for batch in ids.chunks(UPSERT_BATCH) {
            let ids: Vec<PointId> = batch.iter().map(|id| point_key(id).into()).collect();
            self.call(
                self.client.delete_points(
                    DeletePointsBuilder::new(&self.collection)
                        .points(PointsIdsList { ids })
                        .wait(true),
                ),
            )?;
        }
        Ok(())
    }

    fn delete_paths(&self, paths: &[String]) -> Result<()> {
        if paths.is_empty() {
            return Ok(());
        }
        self.call(
            self.client.delete_points(
                DeletePointsBuilder::new(&self.collection)
                    .points(Filter::must([Condition::matches("path", paths.to_vec())]))
                    .wait(true),
            ),
        )?;
        Ok(())
    }

    fn ids(&self) -> HashSet<String> {
        let mut out = HashSet::new();
        let mut offset: Option<PointId> = None;
        loop {
            let mut request = ScrollPointsBuilder::new(&self.collection)
                .limit(SCROLL_PAGE)
                .with_payload(true)
                .with_vectors(false);
            if let Some(o) = offset.take() {
                request = request.offset(o);
            }
            match self.call(self.client.scroll(request)) {
                Ok(page) => {
                    out.extend(
                        page.result
                            .iter()
                            .filter_map(|p| text(p.payload.get("chunk_id")).map(str::to_string)),
                    );
                    match page.next_page_offset {
                        Some(next) => offset = Some(next),
                        None => return out,
                    }
                }
                Err(e) => {
                    // Reported; the caller then re-embeds from the cache, and its upserts
                    // fail loudly if the server is still away.
                    tracing::warn!("{e}");
                    return out;
                }
            }
        }
    }

    fn len(&self) -> usize {
        match self.call(
            self.client
                .count(CountPointsBuilder::new(&self.collection).exact(true)),
        ) {
            Ok(r) => r.result.map_or(0, |c| c.count as usize),
            Err(e) => {
                tracing::warn!("{e}");
                0
            }
        }
    }

    fn search(&self, query: &[f32], k: usize, filter: &VectorFilter) -> Result<Vec<VectorHit>> {
        let mut conditions = Vec::new();
        if let Some(lang) = filter.language {
            conditions.push(Condition::matches("language", lang.name().to_string()));
        }
        if let Some(paths) = &filter.paths {
            if paths.is_empty() {
                return Ok(Vec::new());
            }
            conditions.push(Condition::matches(
                "path",
                paths.iter().cloned().collect::<Vec<String>>(),
            ));
        }
        let mut request =
            SearchPointsBuilder::new(&self.collection, query.to_vec(), k as u64).with_payload(true);
        if !conditions.is_empty() {
            request = request.filter(Filter::must(conditions));
        }
        let found = self.call(self.client.search_points(request))?;
        Ok(found
            .result
            .into_iter()
            .filter_map(|p| {
                Some(VectorHit {
                    id: text(p.payload.get("chunk_id"))?.to_string(),
                    path: text(p.payload.get("path"))?.to_string(),
                    score: p.score,
                })
            })
            .collect())
    }

    fn flush(&self) -> Result<()> {
        // Every write already waited for the server to apply it.
        Ok(())
    }
}
