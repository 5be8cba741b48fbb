//! Polling with a deadline, written once: the delay between looks starts short and grows
//! (by half, by default) up to a ceiling, and a wait never runs past the deadline. The
//! apply engine's task and removal waits, the runtime's and the tests' waits use it; the
//! engine's rollout watch keeps its own pace, which also resets when something changes.
//! Threads outside the async runtime (lock waits, a child's exit) use `wait_blocking`.
//!
//! On tokio's clock, so a paused test clock drives it too.

use std::time::Duration;

use tokio::time::Instant;

/// A backoff between looks, with an optional deadline.
#[derive(Debug, Clone)]
pub struct Poll {
    first: Duration,
    delay: Duration,
    max: Duration,
    /// Growth per look: the delay is multiplied by `.0 / .1`.
    growth: (u32, u32),
    deadline: Option<Instant>,
}

impl Poll {
    /// Looks `first` apart at first, growing by half up to `max`, with no deadline.
    pub fn new(first: Duration, max: Duration) -> Self {
        Poll { first, delay: first, max, growth: (3, 2), deadline: None }
    }

    /// Growth by `num / den` per look instead of 3/2.
    pub fn growing(self, num: u32, den: u32) -> Self {
        Poll { growth: (num, den.max(1)), ..self }
    }

    /// Give up at `deadline`.
    pub fn until(self, deadline: Instant) -> Self {
        Poll { deadline: Some(deadline), ..self }
    }

    /// Give up `timeout` from now.
    pub fn within(self, timeout: Duration) -> Self {
        self.until(Instant::now() + timeout)
    }

    /// The deadline, if any.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether the deadline has passed.
    pub fn expired(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Start again from the first delay (something changed).
    pub fn reset(&mut self) {
        self.delay = self.first;
    }

    /// When the next look is due: the current delay from now, not past the deadline. The
    /// delay then grows.
    pub fn next_look(&mut self) -> Instant {
        let mut at = Instant::now() + self.delay;
        if let Some(d) = self.deadline {
            at = at.min(d);
        }
        self.delay = (self.delay * self.growth.0 / self.growth.1).min(self.max);
        at
    }

    /// Sleep until the next look. `false`, at once, when the deadline has passed: the
    /// caller gives up (after one last look, if it wants one).
    pub async fn wait(&mut self) -> bool {
        if self.expired() {
            return false;
        }
        tokio::time::sleep_until(self.next_look()).await;
        true
    }

    /// [`wait`](Self::wait) for a thread outside the async runtime (lock waits, a child
    /// process's exit): the same pace and deadline, on the thread.
    pub fn wait_blocking(&mut self) -> bool {
        if self.expired() {
            return false;
        }
        std::thread::sleep(self.next_look().saturating_duration_since(Instant::now()));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_ceiling_and_stop_at_the_deadline() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            let mut p = Poll::new(Duration::from_millis(100), Duration::from_millis(200));
            // Each look is due exactly the current delay after the moment it was asked for.
            let next = |p: &mut Poll, delay: u64| {
                let (before, look, after) = (Instant::now(), p.next_look(), Instant::now());
                let delay = Duration::from_millis(delay);
                assert!(look >= before + delay && look <= after + delay, "due {delay:?} later");
            };
            next(&mut p, 100);
            next(&mut p, 150);
            next(&mut p, 200); // 225, capped
            next(&mut p, 200);
            p.reset();
            next(&mut p, 100);

            let mut bounded = Poll::new(Duration::from_secs(60), Duration::from_secs(60)).within(Duration::ZERO);
            assert!(bounded.expired());
            assert!(!bounded.wait().await, "a passed deadline gives up at once");
            let mut soon =
                Poll::new(Duration::from_secs(60), Duration::from_secs(60)).within(Duration::from_millis(20));
            assert!(soon.next_look() <= soon.deadline().unwrap(), "never past the deadline");
        });
    }
}
