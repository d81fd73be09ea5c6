//! Event expiry: Events older than the TTL (an hour by default, as kube-apiserver's
//! `--event-ttl`) are deleted, so a cluster that runs for months does not keep every Event it
//! ever recorded. Level-triggered: each pass lists the Events and deletes the expired ones.

use std::time::Duration;

use api::{Event, ResourceType};
use apiserver::{ApiError, DeleteOptions, ListFilter, Registry};

/// How long Events are kept.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// When an Event last happened: its last timestamp, else its event time, else its creation.
fn last_seen(event: &Event) -> Option<api::jiff::Timestamp> {
    event
        .last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| event.event_time.as_ref().map(|t| t.0))
        .or_else(|| event.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// The Events among `events` that are expired at `now` under `ttl`.
pub fn expired<'a>(events: &'a [Event], ttl: Duration, now: api::jiff::Timestamp) -> impl Iterator<Item = &'a Event> + 'a {
    let ttl = api::jiff::SignedDuration::try_from(ttl).unwrap_or(api::jiff::SignedDuration::from_secs(3600));
    events.iter().filter(move |e| last_seen(e).is_some_and(|seen| seen + ttl <= now))
}

/// One pass: deletes every expired Event; returns how many went.
pub async fn pass(registry: &Registry, ttl: Duration) -> Result<usize, ApiError> {
    let (events, _) = registry.list_as::<Event>(None, &ListFilter::default()).await?;
    let now = api::jiff::Timestamp::now();
    let mut deleted = 0;
    for event in expired(&events, ttl, now) {
        let (ns, name) = (event.metadata.namespace.as_deref(), event.metadata.name.as_deref().unwrap_or(""));
        match registry.delete(ResourceType::of::<Event>(), ns, name, &DeleteOptions::default()).await {
            Ok(_) => deleted += 1,
            Err(ApiError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}

/// Runs a pass every `period` (a tenth of the TTL, at most a minute) until dropped.
pub async fn run(registry: Registry, ttl: Duration) {
    let period = (ttl / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        match pass(&registry, ttl).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(deleted = n, "expired events deleted"),
            Err(e) => tracing::warn!(error = %e, "deleting expired events"),
        }
        tokio::time::sleep(period).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use api::k8s_openapi::api::core::v1::ObjectReference;

    use super::*;

    fn event_at(name: &str, seconds_ago: i64) -> Event {
        let mut event = api::events::build(
            ObjectReference { name: Some(name.into()), namespace: Some("default".into()), ..Default::default() },
            "test",
            false,
            "Tested",
            "m",
        );
        let at = api::Time(api::jiff::Timestamp::now() - api::jiff::SignedDuration::from_secs(seconds_ago));
        event.metadata.name = Some(name.into());
        event.first_timestamp = Some(at.clone());
        event.last_timestamp = Some(at);
        event
    }

    #[tokio::test]
    async fn events_past_the_ttl_are_deleted_and_recent_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::new(Arc::new(store::embedded::EmbeddedStore::open(&dir.path().join("s.redb")).unwrap()));
        registry.create(ResourceType::of::<api::Namespace>(), None, serde_json::json!({"metadata": {"name": "default"}})).await.unwrap();
        for (name, age) in [("old", 7200), ("edge", 3601), ("recent", 60)] {
            registry.create_as(&event_at(name, age)).await.unwrap();
        }
        assert_eq!(pass(&registry, DEFAULT_TTL).await.unwrap(), 2);
        let (left, _) = registry.list_as::<Event>(None, &ListFilter::default()).await.unwrap();
        let names: Vec<_> = left.iter().filter_map(|e| e.metadata.name.as_deref()).collect();
        assert_eq!(names, ["recent"]);
        assert_eq!(pass(&registry, DEFAULT_TTL).await.unwrap(), 0);
    }
}
