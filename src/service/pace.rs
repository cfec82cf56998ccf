//! How fast a request body must arrive. One rule, used for every body the endpoint
//! reads (the whole request, each chunk, a refused body being drained):
//!
//! * no piece may be further than `idle` from the one before (or from the start);
//! * after a `grace`, the body must keep up with `min_rate` on the whole: at `t` after
//!   the start, at least `(t - grace) × min_rate` bytes must be in. A client trickling a
//!   byte now and then is cut off right after the grace, not after the time its whole
//!   announced length would take at that rate;
//! * optionally, the whole body within `total`.
//!
//! A cut-off body ends with a [`BodyError`] item, and the reason is kept in a cell, so a
//! caller that handed the stream on can tell a slow client (who may retry) from a broken
//! body.

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll},
    time::Duration,
};
use tokio::time::Instant;

/// Longer than any wait the pace allows.
const NEVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// How long a request body may take (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BodyPace {
    /// Longest silence between two pieces.
    pub idle: Duration,
    /// Time before the minimum rate applies.
    pub grace: Duration,
    /// Slowest average rate after the grace, in bytes per second; 0: no minimum.
    pub min_rate: u64,
    /// Longest time for the whole body, if any.
    pub total: Option<Duration>,
}

impl BodyPace {
    /// For a body read only to be dropped after a refusal: `idle` between pieces and in
    /// all.
    pub fn refusal(idle: Duration) -> Self {
        Self {
            idle,
            grace: idle,
            min_rate: 0,
            total: Some(idle),
        }
    }

    /// When a body that started at `start` and has delivered `received` bytes has run
    /// out of time, and why, given that the last piece came at `last`.
    fn deadline(&self, start: Instant, last: Instant, received: u64) -> (Instant, BodyError) {
        // A year stands for "never": whatever the settings say, no sum overflows.
        let at = |from: Instant, wait: Duration| from + wait.min(NEVER);
        let mut due = (at(last, self.idle), BodyError::Idle(self.idle));
        if self.min_rate > 0 {
            let earned = Duration::try_from_secs_f64(received as f64 / self.min_rate as f64)
                .unwrap_or(NEVER);
            let by = at(start, self.grace.saturating_add(earned));
            if by < due.0 {
                due = (by, BodyError::TooSlow(self.min_rate));
            }
        }
        if let Some(total) = self.total
            && at(start, total) < due.0
        {
            due = (at(start, total), BodyError::TooLong(total));
        }
        due
    }
}

/// Why a request body ended before its end.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BodyError {
    /// No piece came within the idle timeout.
    #[error("the request body stalled for {0:?}")]
    Idle(Duration),
    /// Slower on the whole than the minimum rate, after the grace.
    #[error("the request body arrived more slowly than {0} bytes per second")]
    TooSlow(u64),
    /// Still coming after the longest time allowed.
    #[error("the request body took longer than {0:?}")]
    TooLong(Duration),
    /// The client went away or sent garbage.
    #[error("the request body was cut off: {0}")]
    Broken(String),
    /// More bytes came before the chunk than any client sends.
    #[error("{0}")]
    Refused(&'static str),
}

/// Where the reason a paced body was cut off is kept (empty while it was not).
pub(crate) type Cut = Arc<OnceLock<BodyError>>;

/// `body` with `pace` enforced: an error item (and the end) once the pace is broken; the
/// body's own errors become [`BodyError::Broken`]. The cell holds the reason when the
/// pace (not the body) ended it. Ended, it stays ended (readers such as multer may ask
/// again).
pub(crate) fn paced<S, E>(body: S, pace: BodyPace) -> (Paced<S>, Cut)
where
    S: Stream<Item = Result<Bytes, E>> + Send,
    E: std::fmt::Display,
{
    let cut: Cut = Arc::default();
    let start = Instant::now();
    let (due, why) = pace.deadline(start, start, 0);
    let paced = Paced {
        body: Box::pin(body),
        pace,
        start,
        received: 0,
        timer: Box::pin(tokio::time::sleep_until(due)),
        why,
        cut: cut.clone(),
        ended: false,
    };
    (paced, cut)
}

/// A body under a [`BodyPace`]: see [`paced`]. One timer for the whole body, moved at
/// each piece (a request holds thousands of pieces: no timer is made per piece).
pub(crate) struct Paced<S> {
    body: Pin<Box<S>>,
    pace: BodyPace,
    start: Instant,
    received: u64,
    /// When the body runs out of time, as of the last piece…
    timer: Pin<Box<tokio::time::Sleep>>,
    /// …and why it then would.
    why: BodyError,
    cut: Cut,
    ended: bool,
}

impl<S, E> Stream for Paced<S>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::fmt::Display,
{
    type Item = Result<Bytes, BodyError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        match this.body.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(piece))) => {
                this.received += piece.len() as u64;
                let (due, why) = this
                    .pace
                    .deadline(this.start, Instant::now(), this.received);
                this.timer.as_mut().reset(due);
                this.why = why;
                Poll::Ready(Some(Ok(piece)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.ended = true;
                Poll::Ready(Some(Err(BodyError::Broken(e.to_string()))))
            }
            Poll::Ready(None) => {
                this.ended = true;
                Poll::Ready(None)
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.ended = true;
                    let _ = this.cut.set(this.why.clone());
                    Poll::Ready(Some(Err(this.why.clone())))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

/// Reads and drops up to `limit` bytes of a body we do not need, so the client reads our
/// answer instead of a connection reset (browsers report a reset as a network error and
/// retry, or give up without the reason). A longer body is cut off there, and so is one
/// that breaks `pace`.
pub(crate) async fn drain<S, E>(body: S, limit: u64, pace: BodyPace)
where
    S: Stream<Item = Result<Bytes, E>> + Send,
    E: std::fmt::Display,
{
    let (body, _) = paced(body, pace);
    let mut body = std::pin::pin!(body);
    let mut seen = 0u64;
    while seen <= limit {
        match body.next().await {
            Some(Ok(piece)) => seen += piece.len() as u64,
            _ => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

    fn pace(idle: u64, grace: u64, min_rate: u64) -> BodyPace {
        BodyPace {
            idle: Duration::from_secs(idle),
            grace: Duration::from_secs(grace),
            min_rate,
            total: None,
        }
    }

    /// A body that sends `piece` bytes every `every`, `count` times.
    fn trickle(
        piece: usize,
        every: Duration,
        count: usize,
    ) -> impl Stream<Item = Result<Bytes, String>> + Send {
        stream::iter(0..count).then(move |_| async move {
            tokio::time::sleep(every).await;
            Ok(Bytes::from(vec![b'x'; piece]))
        })
    }

    async fn outcome(
        body: impl Stream<Item = Result<Bytes, String>> + Send,
        pace: BodyPace,
    ) -> (u64, Option<BodyError>, Duration) {
        let start = Instant::now();
        let (body, cut) = paced(body, pace);
        let mut body = std::pin::pin!(body);
        let mut got = 0;
        while let Some(Ok(piece)) = body.next().await {
            got += piece.len() as u64;
        }
        (got, cut.get().cloned(), start.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn a_byte_every_50_s_is_cut_off_just_after_the_grace_not_after_its_length() {
        // 1 byte / 50 s never trips a 60 s idle timeout; on the whole it is far below
        // 1 KiB/s, so it ends right after the 60 s grace (not after 64 MiB at 1 KiB/s).
        let (got, cut, took) = outcome(
            trickle(1, Duration::from_secs(50), 100_000),
            pace(60, 60, 1024),
        )
        .await;
        assert_eq!(cut, Some(BodyError::TooSlow(1024)));
        assert_eq!(got, 1);
        assert!(took < Duration::from_secs(61), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_at_twice_the_minimum_rate_is_never_cut() {
        let (got, cut, _) = outcome(
            trickle(2048, Duration::from_secs(1), 300),
            pace(60, 60, 1024),
        )
        .await;
        assert_eq!((got, cut), (300 * 2048, None));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_body_is_cut_off_after_the_idle_timeout() {
        let (got, cut, took) = outcome(
            trickle(10, Duration::from_secs(1), 3).chain(stream::pending()),
            pace(5, 60, 0),
        )
        .await;
        assert_eq!(
            (got, cut),
            (30, Some(BodyError::Idle(Duration::from_secs(5))))
        );
        assert_eq!(took, Duration::from_secs(8));
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_body_is_read_for_at_most_its_idle_time_in_all() {
        let (_, cut, took) = outcome(
            trickle(10, Duration::from_secs(1), 1000),
            BodyPace::refusal(Duration::from_secs(5)),
        )
        .await;
        assert_eq!(cut, Some(BodyError::TooLong(Duration::from_secs(5))));
        assert_eq!(took, Duration::from_secs(5));
    }

    #[tokio::test]
    async fn settings_of_any_size_never_overflow_a_deadline() {
        let huge = BodyPace {
            idle: Duration::MAX,
            grace: Duration::MAX,
            min_rate: 1,
            total: Some(Duration::MAX),
        };
        let body = stream::iter([Ok(Bytes::from("ab"))]);
        assert_eq!(outcome(body, huge).await.0, 2);
    }

    #[tokio::test]
    async fn the_bodys_own_error_is_passed_on_and_not_taken_for_slowness() {
        let body = stream::iter([Ok(Bytes::from("ab")), Err("reset".to_owned())]);
        let (got, cut, _) = outcome(body, pace(5, 5, 1)).await;
        assert_eq!((got, cut), (2, None));
    }
}
