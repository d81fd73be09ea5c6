//! This node's flow log: the flows its policy datapath judged, as [`api::flow::Flow`]s, the
//! newest `capacity` of them kept in a ring buffer (Hubble keeps 4,095 per node), and streamed
//! to readers (the API server, for `flotilla flows`) as one JSON object per line.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use api::flow::{Flow, FlowFilter};
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use tokio::sync::broadcast;

/// Flows kept per node unless configured otherwise.
pub const DEFAULT_CAPACITY: usize = 8192;

/// How many flows a slow follower may fall behind before it misses some.
const FOLLOW_BACKLOG: usize = 4096;

/// The flow log of a node.
pub struct FlowLog {
    capacity: usize,
    ring: Mutex<Ring>,
    new: broadcast::Sender<(u64, Arc<Flow>)>,
}

#[derive(Default)]
struct Ring {
    /// (sequence number, flow), oldest first.
    flows: VecDeque<(u64, Arc<Flow>)>,
    next: u64,
}

impl FlowLog {
    /// A log keeping `capacity` flows; 0 keeps none (the flow log is off).
    pub fn new(capacity: usize) -> Arc<FlowLog> {
        let (new, _) = broadcast::channel(FOLLOW_BACKLOG);
        Arc::new(FlowLog { capacity, ring: Mutex::default(), new })
    }

    /// Whether flows are kept at all.
    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds flows, dropping the oldest past the capacity, and hands them to followers.
    pub fn extend(&self, flows: impl IntoIterator<Item = Flow>) {
        if !self.enabled() {
            return;
        }
        let mut ring = self.ring();
        for flow in flows {
            let flow = Arc::new(flow);
            let seq = ring.next;
            ring.next += 1;
            if ring.flows.len() == self.capacity {
                ring.flows.pop_front();
            }
            ring.flows.push_back((seq, flow.clone()));
            // No follower is no error.
            let _ = self.new.send((seq, flow));
        }
    }

    /// The buffered flows `filter` selects (the newest `filter.last` of them), and the
    /// sequence number of the last flow buffered.
    fn buffered(&self, filter: &FlowFilter) -> (Vec<Arc<Flow>>, Option<u64>) {
        let ring = self.ring();
        let mut flows: Vec<Arc<Flow>> = ring.flows.iter().filter(|(_, f)| filter.matches(f)).map(|(_, f)| f.clone()).collect();
        if let Some(last) = filter.last {
            flows.drain(..flows.len().saturating_sub(last));
        }
        (flows, ring.flows.back().map(|(seq, _)| *seq))
    }

    /// The flows `filter` selects, one JSON line each: those buffered, then (following) each
    /// new one as it comes, none twice and none left out between the two.
    pub fn stream(&self, filter: FlowFilter) -> BoxStream<'static, Result<Bytes, Infallible>> {
        // Subscribed before the buffer is read: a flow added in between is in both, and the
        // sequence number drops the second copy.
        let follow = filter.follow.then(|| self.new.subscribe());
        let (buffered, last) = self.buffered(&filter);
        let head = stream::iter(buffered).map(|f| Ok(line(&f)));
        let Some(receiver) = follow else { return head.boxed() };
        let tail = stream::unfold((receiver, last, filter), |(mut receiver, last, filter)| async move {
            loop {
                match receiver.recv().await {
                    Ok((seq, flow)) if last.is_none_or(|l| seq > l) => {
                        if filter.matches(&flow) {
                            return Some((Ok(line(&flow)), (receiver, Some(seq), filter)));
                        }
                    }
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "a flow follower fell behind and missed flows");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        head.chain(tail).boxed()
    }
}

fn line(flow: &Flow) -> Bytes {
    let mut text = serde_json::to_vec(flow).unwrap_or_default();
    text.push(b'\n');
    Bytes::from(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::flow::{FlowEndpoint, TrafficDirection, Verdict};

    fn flow(port: u16, verdict: Verdict) -> Flow {
        let end = |pod: &str| FlowEndpoint {
            ip: "10.42.0.5".into(),
            port,
            identity: 300,
            namespace: Some("default".into()),
            pod: Some(pod.into()),
            labels: Default::default(),
        };
        Flow {
            time: api::jiff::Timestamp::now(),
            node: "n1".into(),
            verdict,
            drop_reason: None,
            traffic_direction: TrafficDirection::Egress,
            protocol: "TCP".into(),
            source: end("client"),
            destination: end("web"),
            l7: None,
        }
    }

    async fn ports(stream: BoxStream<'static, Result<Bytes, Infallible>>) -> Vec<u16> {
        let lines: Vec<_> = stream.collect().await;
        lines.into_iter().map(|l| serde_json::from_slice::<Flow>(&l.unwrap()).unwrap().destination.port).collect()
    }

    #[tokio::test]
    async fn the_ring_keeps_the_newest_and_a_reader_gets_what_it_selects() {
        let log = FlowLog::new(3);
        log.extend((1..=5).map(|p| flow(p, if p % 2 == 0 { Verdict::Dropped } else { Verdict::Forwarded })));
        assert_eq!(ports(log.stream(FlowFilter::default())).await, vec![3, 4, 5], "the oldest two are gone");
        let dropped = FlowFilter { verdict: Some(Verdict::Dropped), ..Default::default() };
        assert_eq!(ports(log.stream(dropped)).await, vec![4]);
        let last = FlowFilter { last: Some(2), ..Default::default() };
        assert_eq!(ports(log.stream(last)).await, vec![4, 5]);
        let off = FlowLog::new(0);
        off.extend([flow(1, Verdict::Forwarded)]);
        assert!(ports(off.stream(FlowFilter::default())).await.is_empty(), "a log of capacity 0 keeps nothing");
    }

    #[tokio::test]
    async fn a_follower_gets_the_buffer_then_each_new_flow_once() {
        let log = FlowLog::new(100);
        log.extend([flow(1, Verdict::Forwarded)]);
        let mut stream = log.stream(FlowFilter { follow: true, verdict: Some(Verdict::Forwarded), ..Default::default() });
        let port = |line: Option<Result<Bytes, Infallible>>| serde_json::from_slice::<Flow>(&line.unwrap().unwrap()).unwrap().destination.port;
        assert_eq!(port(stream.next().await), 1);
        log.extend([flow(2, Verdict::Dropped), flow(3, Verdict::Forwarded)]);
        assert_eq!(port(stream.next().await), 3, "the dropped flow is filtered out");
        let quiet = tokio::time::timeout(std::time::Duration::from_millis(100), stream.next()).await;
        assert!(quiet.is_err(), "nothing more until a new flow comes");
    }
}
