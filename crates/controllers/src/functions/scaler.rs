//! How many replicas a Function needs: the backlog plus the events in flight, divided by the
//! target per replica, within the bounds — at once when more are needed (from zero on the
//! first event), and fewer only after the load stayed lower for the scale-down delay.

use std::time::Duration;

use tokio::time::Instant;

use super::config::Settings;

/// The replicas the load alone asks for.
pub fn wanted(settings: &Settings, backlog: usize, in_flight: usize) -> u32 {
    let load = (backlog + in_flight) as u64;
    let needed = load.div_ceil(u64::from(settings.target_in_flight.max(1))) as u32;
    needed.clamp(settings.min_replicas, settings.max_replicas)
}

/// The scaler's memory: the replicas decided and since when the load has wanted fewer.
#[derive(Debug)]
pub struct Scaler {
    /// The replicas decided.
    pub replicas: u32,
    lower_since: Option<Instant>,
}

impl Scaler {
    /// Starts at `replicas` (what runs already).
    pub fn new(replicas: u32) -> Scaler {
        Scaler { replicas, lower_since: None }
    }

    /// Decides the replicas at `now` for the load; returns when it should look again for a
    /// pending scale-down (`None` when nothing waits).
    pub fn decide(&mut self, settings: &Settings, backlog: usize, in_flight: usize, now: Instant) -> Option<Duration> {
        let wanted = wanted(settings, backlog, in_flight);
        if wanted >= self.replicas {
            self.replicas = wanted;
            self.lower_since = None;
            return None;
        }
        let since = *self.lower_since.get_or_insert(now);
        let waited = now.duration_since(since);
        if waited >= settings.scale_down_delay {
            self.replicas = wanted;
            self.lower_since = None;
            return None;
        }
        Some(settings.scale_down_delay - waited)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            port: 8080,
            path: "/".into(),
            concurrency: 2,
            timeout: Duration::from_secs(1),
            retries: 1,
            backoff: Duration::from_millis(10),
            triggers: Vec::new(),
            warm_pool: 0,
            min_replicas: 0,
            max_replicas: 4,
            target_in_flight: 2,
            scale_down_delay: Duration::from_secs(5),
        }
    }

    #[test]
    fn one_event_from_zero_scales_up_at_once_and_the_load_is_bounded() {
        let s = settings();
        assert_eq!(wanted(&s, 0, 0), 0);
        assert_eq!(wanted(&s, 1, 0), 1, "the first event wants a replica");
        assert_eq!(wanted(&s, 3, 2), 3);
        assert_eq!(wanted(&s, 100, 0), 4, "maxReplicas");
        assert_eq!(wanted(&Settings { min_replicas: 1, ..s }, 0, 0), 1, "minReplicas");
    }

    #[tokio::test]
    async fn fewer_replicas_only_after_the_load_stayed_lower_for_the_delay() {
        let s = settings();
        let mut scaler = Scaler::new(0);
        let t0 = Instant::now();
        assert_eq!(scaler.decide(&s, 8, 0, t0), None);
        assert_eq!(scaler.replicas, 4);
        assert_eq!(scaler.decide(&s, 0, 2, t0 + Duration::from_secs(1)), Some(Duration::from_secs(5)));
        assert_eq!(scaler.replicas, 4, "not yet");
        assert_eq!(scaler.decide(&s, 0, 2, t0 + Duration::from_secs(4)), Some(Duration::from_secs(2)));
        assert_eq!(scaler.decide(&s, 8, 0, t0 + Duration::from_secs(5)), None, "load came back: the wait starts over");
        assert_eq!(scaler.decide(&s, 0, 0, t0 + Duration::from_secs(6)), Some(Duration::from_secs(5)));
        assert_eq!(scaler.decide(&s, 0, 0, t0 + Duration::from_secs(11)), None);
        assert_eq!(scaler.replicas, 0, "back to zero");
    }
}
