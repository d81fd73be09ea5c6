//! One Function's dispatcher: it holds the Function's broker subscriptions, buffers events while
//! replicas start, delivers each to the ready replica with the fewest in flight (never more than
//! the concurrency), retries failures with back-off, sends what exhausts its retries to the
//! dead-letter subject, answers requests that asked for a reply, and scales the replicas with the
//! backlog and the events in flight. It reacts to every event, pod change and delivery as it
//! happens; the only timers are retry back-offs, the scale-down delay, the status write and,
//! for JetStream, telling the server that held messages are still being worked on.
//!
//! A message from a broker that holds it until it is settled (JetStream, MQTT QoS 1 and 2) is
//! settled only after its handler answered 2xx or its dead letter was stored, so losing the
//! dispatcher at any point means a redelivery, never a loss. JetStream counts deliveries and
//! redelivers after a nak; MQTT redelivers only on reconnect, so its retries stay here.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use api::function::{Function, FunctionStatus};
use apiserver::{ApiError, DeleteOptions, Registry};
use events::mqtt::MqttBroker;
use events::nats::NatsBroker;
use events::{Ack, Broker, Message, MessageStream, Settle};
use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::config::Settings;
use super::delivery::{self, deliver, Outcome, Target};
use super::metrics::FunctionMetrics;
use super::replicas::{claimed, new_pod, replicas, replicas_of_template, template_of, Replica};
use super::scaler::Scaler;
use crate::Caches;

/// How often a replica that does not listen yet is tried again.
const NOT_LISTENING_RETRY: Duration = Duration::from_millis(5);

/// The Function's status is written at most this often.
const STATUS_PERIOD: Duration = Duration::from_secs(1);

/// An event waiting for a replica.
#[derive(Debug)]
struct Pending {
    message: Message,
    /// The trigger it came by (its index in the spec).
    trigger: usize,
    /// Deliveries made so far.
    attempts: u32,
    /// While in flight, its key in the dispatcher's held acks.
    flight: u64,
    /// Since when the replicas it was sent to did not listen yet.
    not_listening_since: Option<Instant>,
}

/// An event waiting out a back-off, ordered by when it is due.
struct Delayed {
    due: Instant,
    seq: u64,
    pending: Pending,
}

impl PartialEq for Delayed {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Delayed {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

/// A replica's load.
#[derive(Debug, Default)]
struct Endpoint {
    in_flight: u32,
    /// Where its events go, for the address it had when first used.
    url: Option<(std::net::IpAddr, Target)>,
    /// No new events: it is being removed (scale-in or an old template).
    draining: bool,
}

type Done = (Pending, String, Outcome, Instant);

/// The dispatcher of one Function.
pub struct Dispatcher {
    key: String,
    function: Arc<Function>,
    settings: Settings,
    registry: Registry,
    caches: Caches,
    metrics: Arc<FunctionMetrics>,
    http: Arc<super::http1::Client>,
    /// NATS connections by URL, shared by the triggers on one server.
    nats: HashMap<String, NatsBroker>,
    /// Per trigger, the connection its dead letters and replies go by.
    sources: Vec<Option<Arc<dyn Broker>>>,
    /// How often held JetStream messages are reported in progress (a third of the shortest
    /// ack wait), and when next.
    progress_every: Option<Duration>,
    next_progress: Option<Instant>,
    /// The acks of events in flight, for those progress reports.
    held: HashMap<u64, Ack>,
    /// Events that used up their deliveries, to be dead-lettered.
    exhausted: Vec<Pending>,
    ready: VecDeque<Pending>,
    delayed: BinaryHeap<Reverse<Delayed>>,
    seq: u64,
    endpoints: BTreeMap<String, Endpoint>,
    replicas: Vec<Replica>,
    /// A pod or the Function changed since `replicas` was read from the cache.
    stale: bool,
    /// The hash of the Function's pod template.
    template: String,
    /// Pods asked for and not yet in the cache.
    creating: u32,
    /// Warm-pool pods asked for and not yet in the cache.
    creating_warm: u32,
    /// Warm-pool pods claimed whose claim the cache may not show yet.
    claimed: BTreeSet<String>,
    /// Pods deleted and maybe still in the cache.
    deleting: BTreeSet<String>,
    scaler: Scaler,
    scale_down_at: Option<Instant>,
    published: Option<FunctionStatus>,
    last_status: Option<Instant>,
    /// The received and acked counts when the rates were last taken, and when.
    rate_sample: Option<(u64, u64, Instant)>,
    rates: (f64, f64),
}

impl Dispatcher {
    /// A dispatcher for the Function `key` (`namespace/name`) as `functions` holds it.
    pub fn new(key: String, function: Arc<Function>, registry: Registry, caches: Caches, metrics: Arc<FunctionMetrics>) -> Dispatcher {
        let settings = Settings::of(&function);
        let running = replicas(&caches, &function).iter().filter(|r| !r.finished && !r.warm).count() as u32;
        let http = Arc::new(super::http1::Client::default());
        Dispatcher {
            key,
            settings,
            function,
            registry,
            caches,
            metrics,
            http,
            nats: HashMap::new(),
            sources: Vec::new(),
            progress_every: None,
            next_progress: None,
            held: HashMap::new(),
            exhausted: Vec::new(),
            ready: VecDeque::new(),
            delayed: BinaryHeap::new(),
            seq: 0,
            endpoints: BTreeMap::new(),
            replicas: Vec::new(),
            stale: true,
            template: String::new(),
            creating: 0,
            creating_warm: 0,
            claimed: BTreeSet::new(),
            deleting: BTreeSet::new(),
            scaler: Scaler::new(running),
            scale_down_at: None,
            published: None,
            last_status: None,
            rate_sample: None,
            rates: (0.0, 0.0),
        }
    }

    async fn nats_broker(&mut self, url: &str) -> Result<NatsBroker, events::BrokerError> {
        if let Some(broker) = self.nats.get(url) {
            return Ok(broker.clone());
        }
        let broker = NatsBroker::connect(url).await?;
        self.nats.insert(url.to_string(), broker.clone());
        Ok(broker)
    }

    /// Subscribes to every trigger; the streams end only with the subscriptions.
    async fn subscribe(&mut self) -> Result<Vec<futures::stream::BoxStream<'static, (usize, Message)>>, events::BrokerError> {
        let function = self.function.clone();
        let mut streams = Vec::new();
        let mut sources: Vec<Option<Arc<dyn Broker>>> = Vec::new();
        let mut progress_every: Option<Duration> = None;
        for (i, trigger) in function.spec.triggers.iter().enumerate() {
            let (source, stream): (Arc<dyn Broker>, MessageStream) = if let Some(nats) = &trigger.nats {
                let broker = self.nats_broker(&nats.url).await?;
                let stream = broker.subscribe(&nats.subject, nats.queue.as_deref()).await?;
                broker.flush().await?;
                (Arc::new(broker), stream)
            } else if let (Some(js), Some(consumer)) = (&trigger.jetstream, self.settings.consumer(&function, trigger)) {
                let broker = self.nats_broker(&js.url).await?;
                let stream = broker.consume(&consumer).await?;
                let every = consumer.ack_wait / 3;
                progress_every = Some(progress_every.map_or(every, |p| p.min(every)));
                (Arc::new(broker), stream)
            } else if let (Some(mqtt), Some(subscription)) = (&trigger.mqtt, Settings::subscription(&function, trigger, i)) {
                let (broker, stream) = MqttBroker::subscribe(&mqtt.url, &subscription).await?;
                (Arc::new(broker), stream)
            } else {
                sources.push(None);
                continue;
            };
            sources.push(Some(source));
            streams.push(stream.map(move |m| (i, m)).boxed());
        }
        self.sources = sources;
        self.progress_every = progress_every;
        self.next_progress = progress_every.map(|p| Instant::now() + p);
        Ok(streams)
    }

    /// Subscribes, trying again every 2 s until it works.
    async fn subscribe_until_done(&mut self) -> Vec<futures::stream::BoxStream<'static, (usize, Message)>> {
        loop {
            match self.subscribe().await {
                Ok(streams) => return streams,
                Err(e) => {
                    tracing::warn!(function = %self.key, error = %e, "cannot subscribe; trying again in 2 s");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    }

    /// Runs until the task is dropped. `updates` carries the Function's later versions.
    pub async fn run(mut self, mut updates: watch::Receiver<Arc<Function>>) {
        let mut incoming = futures::stream::select_all(self.subscribe_until_done().await);
        let mut pods = self.caches.pods.subscribe();
        let mut deliveries: JoinSet<Done> = JoinSet::new();
        loop {
            self.promote_due();
            self.report_progress().await;
            self.sync_replicas().await;
            self.dispatch(&mut deliveries);
            for pending in std::mem::take(&mut self.exhausted) {
                let why = format!("delivered {} times, the most its trigger allows", pending.attempts);
                self.dead_letter(pending, "-", why, Duration::ZERO).await;
            }
            self.publish_status().await;
            let wake = self.next_wake();
            tokio::select! {
                message = incoming.next() => match message {
                    Some((trigger, message)) => self.receive(trigger, message),
                    None => return tracing::warn!(function = %self.key, "broker subscriptions ended"),
                },
                Some(Ok(done)) = deliveries.join_next(), if !deliveries.is_empty() => self.on_done(done).await,
                _ = pods.recv() => self.stale = true,
                changed = updates.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let function = updates.borrow_and_update().clone();
                    let resubscribe = function.spec.triggers != self.function.spec.triggers;
                    self.settings = Settings::of(&function);
                    self.function = function;
                    self.stale = true;
                    for endpoint in self.endpoints.values_mut() {
                        endpoint.url = None;
                    }
                    if resubscribe {
                        match self.subscribe().await {
                            Ok(streams) => incoming = futures::stream::select_all(streams),
                            Err(e) => tracing::warn!(function = %self.key, error = %e, "the triggers changed and cannot be subscribed; keeping the old ones"),
                        }
                    }
                }
                _ = tokio::time::sleep_until(wake) => {}
            }
            // Take whatever else is already there before deciding again.
            while let Some(Some((trigger, message))) = futures::FutureExt::now_or_never(incoming.next()) {
                self.receive(trigger, message);
            }
        }
    }

    fn receive(&mut self, trigger: usize, message: Message) {
        self.metrics.update(&self.key, |c| c.received += 1);
        // A redelivered JetStream message arrives with the deliveries it already had.
        let attempts = message.delivered.saturating_sub(1);
        self.ready.push_back(Pending { message, trigger, attempts, flight: 0, not_listening_since: None });
    }

    fn deliveries(&self, trigger: usize) -> u32 {
        self.settings.triggers.get(trigger).map_or(self.settings.retries + 1, |t| t.deliveries)
    }

    /// Tells JetStream that every message held here is still being worked on, a third of the
    /// ack wait apart, so a long backlog or a cold start is not delivered twice.
    async fn report_progress(&mut self) {
        let (Some(every), Some(at)) = (self.progress_every, self.next_progress) else { return };
        if at > Instant::now() {
            return;
        }
        self.next_progress = Some(Instant::now() + every);
        let waiting = self.ready.iter().chain(self.delayed.iter().map(|Reverse(d)| &d.pending)).filter_map(|p| p.message.ack.as_ref());
        let acks: Vec<Ack> = waiting.chain(self.held.values()).filter(|a| a.0.ack_wait().is_some()).cloned().collect();
        for ack in acks {
            if let Err(e) = ack.0.progress().await {
                tracing::debug!(function = %self.key, error = %e, "progress report");
            }
        }
    }

    /// Settles the event with its broker, where the broker waits for that.
    async fn settle(&self, pending: &Pending, how: Settle) {
        if let Some(ack) = &pending.message.ack {
            if let Err(e) = ack.0.settle(how).await {
                tracing::warn!(function = %self.key, event = %pending.message.id, error = %e, "settling with the broker; it will deliver the event again");
            }
        }
    }

    fn delay(&mut self, pending: Pending, wait: Duration) {
        self.seq += 1;
        self.delayed.push(Reverse(Delayed { due: Instant::now() + wait, seq: self.seq, pending }));
    }

    fn promote_due(&mut self) {
        let now = Instant::now();
        while self.delayed.peek().is_some_and(|Reverse(d)| d.due <= now) {
            if let Some(Reverse(d)) = self.delayed.pop() {
                self.ready.push_back(d.pending);
            }
        }
    }

    fn backlog(&self) -> usize {
        self.ready.len() + self.delayed.len()
    }

    fn in_flight(&self) -> usize {
        self.endpoints.values().map(|e| e.in_flight as usize).sum()
    }

    fn next_wake(&self) -> Instant {
        let mut wake = Instant::now() + STATUS_PERIOD;
        if let Some(Reverse(d)) = self.delayed.peek() {
            wake = wake.min(d.due);
        }
        if let Some(at) = self.scale_down_at {
            wake = wake.min(at);
        }
        if let Some(at) = self.next_progress {
            wake = wake.min(at);
        }
        wake
    }

    /// Starts a delivery for every ready event a replica has room for.
    fn dispatch(&mut self, deliveries: &mut JoinSet<Done>) {
        let ready: BTreeMap<&str, &Replica> =
            self.replicas.iter().filter(|r| r.ready && r.current && !r.warm && r.ip.is_some()).map(|r| (r.name.as_str(), r)).collect();
        while !self.ready.is_empty() {
            let target = self
                .endpoints
                .iter()
                .filter(|(name, e)| !e.draining && e.in_flight < self.settings.concurrency && ready.contains_key(name.as_str()))
                .min_by_key(|(_, e)| e.in_flight)
                .map(|(name, _)| name.clone());
            let Some(name) = target else { return };
            let Some(ip) = ready.get(name.as_str()).and_then(|r| r.ip) else { return };
            let Some(mut pending) = self.ready.pop_front() else { return };
            if pending.attempts >= self.deliveries(pending.trigger) {
                self.exhausted.push(pending);
                continue;
            }
            if let Some(ack) = &pending.message.ack {
                self.seq += 1;
                pending.flight = self.seq;
                self.held.insert(self.seq, ack.clone());
            }
            let mut to = None;
            if let Some(endpoint) = self.endpoints.get_mut(&name) {
                endpoint.in_flight += 1;
                if endpoint.url.as_ref().is_none_or(|(at, _)| *at != ip) {
                    endpoint.url = delivery::target(ip, self.settings.port, &self.settings.path).map(|t| (ip, t));
                }
                to = endpoint.url.as_ref().map(|(_, t)| t.clone());
            }
            let attempt = pending.attempts + 1;
            let (http, timeout) = (self.http.clone(), self.settings.timeout);
            deliveries.spawn(async move {
                let started = Instant::now();
                let outcome = match to {
                    Some(to) => deliver(&http, &to, &pending.message, attempt, timeout).await,
                    None => Outcome::Failed(format!("no URL for {ip}")),
                };
                if outcome != Outcome::NotListening {
                    pending.attempts = attempt;
                }
                (pending, name, outcome, started)
            });
        }
    }

    async fn on_done(&mut self, (mut pending, replica, outcome, started): Done) {
        if let Some(endpoint) = self.endpoints.get_mut(&replica) {
            endpoint.in_flight = endpoint.in_flight.saturating_sub(1);
        }
        self.held.remove(&pending.flight);
        let took = started.elapsed();
        match outcome {
            Outcome::NotListening => {
                let since = *pending.not_listening_since.get_or_insert_with(Instant::now);
                if since.elapsed() < self.settings.timeout {
                    return self.delay(pending, NOT_LISTENING_RETRY);
                }
                pending.attempts += 1;
                self.failed(pending, &replica, format!("nothing listens on port {} of {replica}", self.settings.port), took).await;
            }
            Outcome::Acked(body) => {
                let since_arrival = pending.message.time.elapsed().unwrap_or_default();
                self.metrics.update(&self.key, |c| {
                    c.delivered += 1;
                    c.acked += 1;
                });
                self.metrics.observe(&self.key, since_arrival);
                self.metrics
                    .log(&self.key, format!("event={} replica={replica} outcome=acked attempt={} duration={took:?}", pending.message.id, pending.attempts));
                self.settle(&pending, Settle::Done).await;
                if let Some(reply) = pending.message.reply.clone() {
                    if let Some(source) = self.sources.get(pending.trigger).and_then(Option::as_ref) {
                        if let Err(e) = source.publish(&reply, body, &[]).await {
                            tracing::warn!(function = %self.key, error = %e, "publishing the reply");
                        }
                    }
                }
            }
            Outcome::Failed(why) => self.failed(pending, &replica, why, took).await,
        }
    }

    /// A failed delivery: tried again after the back-off, or dead-lettered after the last.
    async fn failed(&mut self, pending: Pending, replica: &str, why: String, took: Duration) {
        self.metrics.update(&self.key, |c| c.delivered += 1);
        let (id, attempts) = (pending.message.id.clone(), pending.attempts);
        if attempts >= self.deliveries(pending.trigger) {
            return self.dead_letter(pending, replica, why, took).await;
        }
        self.metrics.update(&self.key, |c| c.retried += 1);
        self.metrics.log(&self.key, format!("event={id} replica={replica} outcome=retry attempt={attempts} duration={took:?} error={why}"));
        let wait = self.settings.retry_wait(&self.function, pending.trigger, attempts);
        if let Some(ack) = pending.message.ack.as_ref().filter(|a| a.0.redelivers()) {
            // JetStream keeps it and delivers it again after the wait, counted.
            match ack.0.settle(Settle::Retry(wait)).await {
                Ok(()) => return,
                Err(e) => tracing::warn!(function = %self.key, event = %id, error = %e, "nak; retrying here"),
            }
        }
        self.delay(Pending { not_listening_since: None, ..pending }, wait);
    }

    /// An event that failed its last delivery: stored at the dead-letter destination, then
    /// settled. If the destination cannot take it, it waits a back-off and tries again.
    async fn dead_letter(&mut self, pending: Pending, replica: &str, why: String, took: Duration) {
        let (id, attempts) = (pending.message.id.clone(), pending.attempts);
        self.metrics.log(&self.key, format!("event={id} replica={replica} outcome=dead-letter attempt={attempts} duration={took:?} error={why}"));
        let destination = self.settings.triggers.get(pending.trigger).and_then(|t| t.dead_letter.clone());
        let source = self.sources.get(pending.trigger).cloned().flatten();
        let (Some(destination), Some(source)) = (destination, source) else {
            tracing::warn!(function = %self.key, event = %id, error = %why, "event failed every delivery and no deadLetter is set; dropped");
            return self.settle(&pending, Settle::DeadLettered).await;
        };
        let mut headers: Vec<(&str, String)> = events::cloudevents::headers(&pending.message, attempts);
        headers.push(("flotilla-function", self.key.clone()));
        headers.push(("flotilla-failure", why));
        match source.publish_durable(&destination, pending.message.payload.clone(), &headers).await {
            Ok(()) => {
                self.metrics.update(&self.key, |c| c.dead_lettered += 1);
                self.settle(&pending, Settle::DeadLettered).await;
            }
            Err(e) => {
                tracing::warn!(function = %self.key, event = %id, error = %e, "publishing the dead letter; trying again");
                self.delay(pending, self.settings.backoff);
            }
        }
    }

    /// Brings the pods in line with the scaler: creates what is missing, drains and removes
    /// what is too many, of an old template, or finished.
    async fn sync_replicas(&mut self) {
        let now = Instant::now();
        self.scale_down_at = self.scaler.decide(&self.settings, self.backlog(), self.in_flight(), now).map(|wait| now + wait);
        if self.stale {
            // Only when the cache changed: listing and hashing on every turn cost more than
            // the deliveries at 10k events/s.
            self.read_replicas();
        }
        let wanted = self.scaler.replicas;
        let live = |r: &Replica| r.current && !r.finished && !self.endpoints.get(&r.name).is_some_and(|e| e.draining);
        let serving = self.replicas.iter().filter(|r| live(r) && !r.warm).count() as u32;
        let mut pool: Vec<(bool, String)> = self.replicas.iter().filter(|r| live(r) && r.warm).map(|r| (!r.ready, r.name.clone())).collect();
        pool.sort();
        if serving + self.creating < wanted {
            let mut missing = wanted - serving - self.creating;
            // The warm pool first: a thaw instead of a pod start.
            while missing > 0 && !pool.is_empty() {
                let (_, name) = pool.remove(0);
                if self.claim(&name).await {
                    missing -= 1;
                }
            }
            let cold = self.backlog() > 0 && !self.replicas.iter().any(|r| r.ready && r.current && !r.warm);
            for _ in 0..missing {
                self.create_pod(cold, false).await;
            }
        } else if serving > wanted {
            // Scale in the replicas that would cost least: not ready, then the least busy.
            let mut candidates: Vec<(bool, u32, String)> = self
                .replicas
                .iter()
                .filter(|r| r.current && !r.finished && !r.warm && !self.endpoints.get(&r.name).is_some_and(|e| e.draining))
                .map(|r| (r.ready, self.endpoints.get(&r.name).map_or(0, |e| e.in_flight), r.name.clone()))
                .collect();
            candidates.sort();
            for (_, _, name) in candidates.into_iter().take((serving - wanted) as usize) {
                if let Some(e) = self.endpoints.get_mut(&name) {
                    e.draining = true;
                }
            }
        }
        // Keep the pool at its size: new frozen pods for claimed ones, surplus ones removed.
        let pooled = pool.len() as u32 + self.creating_warm;
        for _ in pooled..self.settings.warm_pool {
            self.create_pod(false, true).await;
        }
        for (_, name) in pool.iter().rev().take(pooled.saturating_sub(self.settings.warm_pool) as usize) {
            if let Some(e) = self.endpoints.get_mut(name) {
                e.draining = true;
            }
        }
        let drained: Vec<String> =
            self.replicas.iter().filter(|r| self.endpoints.get(&r.name).is_some_and(|e| e.draining && e.in_flight == 0)).map(|r| r.name.clone()).collect();
        for name in drained {
            self.delete_pod(&name).await;
        }
        let ready = self.replicas.iter().filter(|r| r.ready && r.current).count() as u64;
        let (backlog, in_flight) = (self.backlog() as u64, self.in_flight() as u64);
        self.metrics.update(&self.key, |c| {
            c.ready_replicas = ready;
            c.backlog = backlog;
            c.in_flight = in_flight;
        });
    }

    /// Reads the Function's pods from the cache into `replicas`: counts the pods asked for
    /// that arrived, forgets deleted ones that are gone, and gives each an endpoint.
    fn read_replicas(&mut self) {
        self.stale = false;
        self.template = template_of(&self.function);
        let mut seen = replicas_of_template(&self.caches, &self.function, &self.template);
        // A claim stays ours until the cache shows it; meanwhile the pod serves.
        self.claimed.retain(|name| seen.iter().any(|r| r.name == *name && r.warm));
        for r in seen.iter_mut().filter(|r| self.claimed.contains(&r.name)) {
            r.warm = false;
        }
        let known: BTreeSet<&str> = self.replicas.iter().map(|r| r.name.as_str()).collect();
        let new: Vec<&Replica> = seen.iter().filter(|r| !known.contains(r.name.as_str()) && !self.deleting.contains(&r.name)).collect();
        let new_warm = new.iter().filter(|r| r.warm).count() as u32;
        self.creating = self.creating.saturating_sub(new.len() as u32 - new_warm);
        self.creating_warm = self.creating_warm.saturating_sub(new_warm);
        self.deleting.retain(|name| seen.iter().any(|r| &r.name == name));
        self.replicas = seen.into_iter().filter(|r| !self.deleting.contains(&r.name)).collect();
        let names: BTreeSet<&str> = self.replicas.iter().map(|r| r.name.as_str()).collect();
        self.endpoints.retain(|name, e| names.contains(name.as_str()) || e.in_flight > 0);
        for r in &self.replicas {
            let endpoint = self.endpoints.entry(r.name.clone()).or_default();
            if !r.current || r.finished {
                endpoint.draining = true;
            }
        }
    }

    /// Claims a warm-pool pod: the agent thaws it and it takes events.
    async fn claim(&mut self, name: &str) -> bool {
        let ns = self.function.metadata.namespace.as_deref().unwrap_or("default");
        let Some(pod) = self.caches.pods.get(&format!("{ns}/{name}")) else { return false };
        match self.registry.update_as(&claimed(&pod)).await {
            Ok(_) => {
                self.claimed.insert(name.to_string());
                if let Some(r) = self.replicas.iter_mut().find(|r| r.name == name) {
                    r.warm = false;
                }
                self.metrics.update(&self.key, |c| c.pool_claims += 1);
                tracing::debug!(function = %self.key, pod = name, "warm-pool pod claimed");
                true
            }
            Err(e) => {
                tracing::warn!(function = %self.key, pod = name, error = %e, "claiming a warm-pool pod");
                false
            }
        }
    }

    async fn create_pod(&mut self, cold: bool, warm: bool) {
        match self.registry.create_as(&new_pod(&self.function, warm)).await {
            Ok(pod) => {
                if warm {
                    self.creating_warm += 1;
                } else {
                    self.creating += 1;
                }
                if cold {
                    self.metrics.update(&self.key, |c| c.cold_starts += 1);
                }
                tracing::debug!(function = %self.key, pod = pod.metadata.name.as_deref().unwrap_or(""), cold, "replica created");
            }
            Err(e) => tracing::warn!(function = %self.key, error = %e, "creating a replica"),
        }
    }

    async fn delete_pod(&mut self, name: &str) {
        let ns = self.function.metadata.namespace.clone();
        match self.registry.delete_as::<api::Pod>(ns.as_deref(), name, &DeleteOptions::default()).await {
            Ok(_) | Err(ApiError::NotFound { .. }) => {
                self.deleting.insert(name.to_string());
                self.endpoints.remove(name);
                self.replicas.retain(|r| r.name != name);
            }
            Err(e) => tracing::warn!(function = %self.key, pod = name, error = %e, "removing a drained replica"),
        }
    }

    async fn publish_status(&mut self) {
        if self.last_status.is_some_and(|at| at.elapsed() < STATUS_PERIOD) {
            return;
        }
        let c = self.metrics.counters(&self.key);
        let now = Instant::now();
        match self.rate_sample {
            Some((received, acked, at)) if now.duration_since(at) >= STATUS_PERIOD => {
                let per_second = |n: u64| ((n as f64) / now.duration_since(at).as_secs_f64() * 10.0).round() / 10.0;
                self.rates = (per_second(c.received - received), per_second(c.acked - acked));
                self.rate_sample = Some((c.received, c.acked, now));
            }
            Some(_) => {}
            None => self.rate_sample = Some((c.received, c.acked, now)),
        }
        let status = FunctionStatus {
            replicas: self.scaler.replicas as i32,
            ready_replicas: c.ready_replicas as i32,
            backlog: c.backlog,
            in_flight: c.in_flight,
            received: c.received,
            acked: c.acked,
            dead_lettered: c.dead_lettered,
            cold_starts: c.cold_starts,
            received_per_second: self.rates.0,
            acked_per_second: self.rates.1,
        };
        if self.published.as_ref() == Some(&status) {
            return;
        }
        self.last_status = Some(Instant::now());
        let mut function = (*self.caches.functions.get(&self.key).unwrap_or_else(|| self.function.clone())).clone();
        function.status = Some(status.clone());
        function.metadata.resource_version = None;
        match self.registry.update_status_as(&function).await {
            Ok(_) => self.published = Some(status),
            Err(ApiError::NotFound { .. }) => {}
            Err(e) => tracing::debug!(function = %self.key, error = %e, "writing the function's status"),
        }
    }
}
