//! Identity allocation: every distinct (namespace, security labels) set among the pods gets an
//! Identity, numbered from 256 up (the lowest free number; the object's name is the number, so
//! a second server racing for it gets a conflict and tries again). Pods with the same label
//! set share one. An Identity no pod has needed for `grace` is deleted; when several stand for
//! one label set (two servers allocated at once), the lowest is the one in use and the others
//! go the same way.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::identity::{Identity, IdentitySpec, FIRST_ALLOCATED, LAST_ALLOCATED};
use api::{ObjectMeta, Pod};
use apiserver::{ApiError, DeleteOptions, Registry};

use crate::Caches;

/// How long an unused Identity is kept by default: a pod recreated at once (a rolling update,
/// a node loss) finds its number again.
pub const GRACE: Duration = Duration::from_secs(60);

/// How often the allocator looks even when nothing changed (for the grace period to end).
const RESYNC: Duration = Duration::from_secs(5);

/// The label set a pod needs an Identity for.
fn wanted(pod: &Pod) -> IdentitySpec {
    api::identity::spec_for(pod.metadata.namespace.as_deref().unwrap_or("default"), pod.metadata.labels.as_ref())
}

/// The Identity in use for each label set: the lowest number standing for it.
pub fn in_use(identities: &[Arc<Identity>]) -> BTreeMap<IdentitySpec, u32> {
    api::identity::in_use(identities.iter().filter_map(|i| Some((i.number()?, &i.spec))))
}

/// The label sets the pods need, kept up to date from the pod changes instead of recomputed from
/// every pod on each pass: at thousands of pod changes a second, a pass over all pods per
/// burst was a fifth of the server's CPU.
#[derive(Debug, Default)]
struct Needed {
    /// Each pod's label set as last seen.
    of_pod: HashMap<String, IdentitySpec>,
    /// How many pods need each label set.
    pods: BTreeMap<IdentitySpec, usize>,
}

impl Needed {
    /// The label sets of `pods`.
    fn of(pods: &[Arc<Pod>]) -> Needed {
        let mut needed = Needed::default();
        for pod in pods {
            needed.set(&crate::informer::key_of(&pod.metadata), Some(wanted(pod)));
        }
        needed
    }

    /// Records the label set of the pod `key` (`None`: the pod is gone); true when that makes a
    /// label set needed or no longer needed, the only changes a pass acts on (most pod changes
    /// are of status, and most new pods share a label set with others).
    fn set(&mut self, key: &str, spec: Option<IdentitySpec>) -> bool {
        let before = match &spec {
            Some(spec) => self.of_pod.insert(key.to_string(), spec.clone()),
            None => self.of_pod.remove(key),
        };
        if before == spec {
            return false;
        }
        let mut changed = false;
        if let Some(before) = before {
            if let std::collections::btree_map::Entry::Occupied(mut count) = self.pods.entry(before) {
                *count.get_mut() -= 1;
                if *count.get() == 0 {
                    count.remove();
                    changed = true;
                }
            }
        }
        if let Some(spec) = spec {
            let count = self.pods.entry(spec).or_insert(0);
            changed |= *count == 0;
            *count += 1;
        }
        changed
    }

    fn contains(&self, spec: &IdentitySpec) -> bool {
        self.pods.contains_key(spec)
    }

    fn specs(&self) -> impl Iterator<Item = &IdentitySpec> {
        self.pods.keys()
    }
}

/// Runs the allocator until its task is dropped.
pub async fn run(registry: Registry, caches: Caches, grace: Duration) {
    let mut pod_changes = caches.pods.subscribe();
    let mut identity_changes = caches.identities.subscribe();
    // Subscribed first, so every change after this list is applied on top of it.
    let mut needed = Needed::of(&caches.pods.list());
    let mut unused_since: HashMap<u32, Instant> = HashMap::new();
    loop {
        if let Err(e) = pass(&registry, &caches, &needed, grace, &mut unused_since).await {
            tracing::debug!(error = %e, "identity allocation pass failed");
        }
        // Wait for a change that matters, then let a burst (a Deployment scaling up) settle
        // into one pass instead of one per pod.
        let mut dirty = false;
        let resync = tokio::time::sleep(RESYNC);
        tokio::pin!(resync);
        while !dirty {
            tokio::select! {
                change = pod_changes.recv() => dirty = relevant(&mut needed, &caches, change),
                change = identity_changes.recv() => dirty = change.is_err() || change.is_ok_and(|c| c.object.is_none()),
                _ = &mut resync => dirty = true,
            }
        }
        tokio::time::sleep(SETTLE).await;
        loop {
            match pod_changes.try_recv() {
                Ok(change) => {
                    relevant(&mut needed, &caches, Ok(change));
                }
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {
                    needed = Needed::of(&caches.pods.list());
                }
                Err(_) => break,
            }
        }
    }
}

/// How long a burst of pod changes is given to settle into one pass.
const SETTLE: Duration = Duration::from_millis(25);

/// Applies a pod change; true when it can need or free an Identity. Missed changes count: the
/// label sets are taken again from every pod.
fn relevant(needed: &mut Needed, caches: &Caches, change: Result<crate::informer::Change<Pod>, tokio::sync::broadcast::error::RecvError>) -> bool {
    let Ok(change) = change else {
        *needed = Needed::of(&caches.pods.list());
        return true;
    };
    needed.set(&change.key, change.object.as_deref().map(wanted))
}

/// Creates the Identities missing for the pods' label sets, and deletes those unused for
/// `grace` (tracked in `unused_since`).
async fn pass(registry: &Registry, caches: &Caches, needed: &Needed, grace: Duration, unused_since: &mut HashMap<u32, Instant>) -> Result<(), ApiError> {
    let identities = caches.identities.list();
    let chosen = in_use(&identities);
    let mut taken: BTreeSet<u32> = identities.iter().filter_map(|i| i.number()).collect();
    let mut next = FIRST_ALLOCATED;
    for spec in needed.specs().filter(|s| !chosen.contains_key(*s)) {
        while taken.contains(&next) {
            next += 1;
        }
        if next > LAST_ALLOCATED {
            tracing::warn!("no identity numbers are left; pods of new label sets get none");
            break;
        }
        let identity = Identity {
            api_version: api::identity::API_VERSION.into(),
            kind: "Identity".into(),
            metadata: ObjectMeta { name: Some(next.to_string()), ..Default::default() },
            spec: spec.clone(),
        };
        match registry.create_as(&identity).await {
            Ok(_) => tracing::info!(identity = next, namespace = %spec.namespace, labels = ?spec.labels, "allocated an identity"),
            // Another server took the number: the next pass sees its Identity.
            Err(ApiError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
        taken.insert(next);
    }
    let now = Instant::now();
    for identity in &identities {
        let Some(number) = identity.number() else { continue };
        let used = needed.contains(&identity.spec) && chosen.get(&identity.spec) == Some(&number);
        if used {
            unused_since.remove(&number);
            continue;
        }
        let since = *unused_since.entry(number).or_insert(now);
        if now.duration_since(since) < grace {
            continue;
        }
        let opts = DeleteOptions { precondition_uid: identity.metadata.uid.clone(), ..Default::default() };
        match registry.delete_as::<Identity>(None, &number.to_string(), &opts).await {
            Ok(_) => tracing::info!(identity = number, "deleted an unused identity"),
            Err(ApiError::NotFound { .. } | ApiError::Conflict { .. }) => {}
            Err(e) => return Err(e),
        }
        unused_since.remove(&number);
    }
    unused_since.retain(|n, _| taken.contains(n));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(number: u32, ns: &str, app: &str) -> Arc<Identity> {
        Arc::new(Identity {
            metadata: ObjectMeta { name: Some(number.to_string()), ..Default::default() },
            spec: IdentitySpec { namespace: ns.into(), labels: [("app".to_string(), app.to_string())].into() },
            ..Default::default()
        })
    }

    #[test]
    fn the_lowest_number_of_a_label_set_is_the_one_in_use() {
        let chosen = in_use(&[identity(300, "shop", "web"), identity(257, "shop", "web"), identity(256, "shop", "db"), identity(258, "lab", "web")]);
        let spec = |ns: &str, app: &str| IdentitySpec { namespace: ns.into(), labels: [("app".to_string(), app.to_string())].into() };
        assert_eq!(chosen[&spec("shop", "web")], 257);
        assert_eq!(chosen[&spec("shop", "db")], 256);
        assert_eq!(chosen[&spec("lab", "web")], 258, "the namespace is part of the identity");
    }

    #[test]
    fn a_pass_is_needed_only_when_a_label_set_comes_or_goes() {
        let spec = |app: &str| IdentitySpec { namespace: "shop".into(), labels: [("app".to_string(), app.to_string())].into() };
        let mut needed = Needed::default();
        assert!(needed.set("shop/web-1", Some(spec("web"))), "the first pod of a label set needs an Identity");
        assert!(!needed.set("shop/web-2", Some(spec("web"))), "a second pod of the set shares it");
        assert!(!needed.set("shop/web-1", Some(spec("web"))), "a status change leaves the set alone");
        assert!(needed.set("shop/web-2", Some(spec("db"))), "a relabelled pod needs the new set");
        assert!(needed.set("shop/web-2", None), "the last pod of db is gone");
        assert!(!needed.contains(&spec("db")));
        assert!(needed.contains(&spec("web")), "web-1 still needs web");
        assert!(needed.set("shop/web-1", None), "the last pod of web is gone");
        assert!(!needed.contains(&spec("web")));
        assert_eq!(needed.specs().count(), 0);
        assert!(needed.of_pod.is_empty());
    }
}
