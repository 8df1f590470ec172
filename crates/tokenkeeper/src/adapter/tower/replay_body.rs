//! Request bodies: [`ReplayBody`] says whether a request body can be sent a second time, after
//! a refresh.

use crate::adapter::response_body::ResponseBody;
use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::{BoxBody, UnsyncBoxBody};
use http_body_util::{BodyExt, Empty, Full};
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Request bodies of [`DEFAULT_REPLAY_LIMIT`] bytes or less are kept for a retry.
pub const DEFAULT_REPLAY_LIMIT: usize = 64 * 1024;

/// A request body that may be sent a second time, after a refresh.
///
/// [`AuthService`](super::AuthService) calls [`try_replay`](Self::try_replay) once per
/// token-bearing request, before sending it. What is replayable:
///
/// | body | replayable when |
/// |---|---|
/// | [`Full`] | its size is at most the limit (cloning it costs a refcount for `Bytes`) |
/// | [`Empty`], `String` | always / at most the limit |
/// | [`BoxBody`], [`UnsyncBoxBody`] | every frame is available *now*, without waiting, and they add up to at most the limit |
/// | `tonic::body::Body` (feature `tonic`) | the same: unary and server-streaming calls are; client streams still being produced are not |
///
/// A body that is not replayable is sent as it is (what was already read goes first, nothing
/// is lost or reordered); if the token is refused, the refresh still happens and the original
/// refusal goes back to the caller. Nothing ever waits for a body to finish before sending: a
/// bidirectional stream whose next message depends on the response is never held back.
///
/// Implement it for your own body type by cloning (cheap, shared buffers) or by returning
/// `(self, None)` (never retried).
pub trait ReplayBody: Body + Sized {
    /// Returns the body to send now and, when it can be sent again, a second copy for the retry.
    /// Must not wait, and the first body must yield exactly what `self` would have.
    fn try_replay(self, limit: usize) -> (Self, Option<Self>);
}

impl<D: Buf + Clone> ReplayBody for Full<D> {
    fn try_replay(self, limit: usize) -> (Self, Option<Self>) {
        if fits(&self.size_hint(), limit) {
            (self.clone(), Some(self))
        } else {
            (self, None)
        }
    }
}

impl<D: Buf> ReplayBody for Empty<D> {
    fn try_replay(self, _limit: usize) -> (Self, Option<Self>) {
        (self, Some(Empty::new()))
    }
}

impl ReplayBody for String {
    fn try_replay(self, limit: usize) -> (Self, Option<Self>) {
        if self.len() <= limit {
            (self.clone(), Some(self))
        } else {
            (self, None)
        }
    }
}

impl<E> ReplayBody for BoxBody<Bytes, E>
where
    E: Send + Sync + 'static,
{
    fn try_replay(self, limit: usize) -> (Self, Option<Self>) {
        match drain_ready(self, limit) {
            Drained::Untouched(body) => (body, None),
            Drained::Partial(body) => (body.boxed(), None),
            Drained::Complete(frames) => (
                ResponseBody::<Self>::complete(clone_frames(&frames)).boxed(),
                Some(ResponseBody::<Self>::complete(frames).boxed()),
            ),
        }
    }
}

impl<E> ReplayBody for UnsyncBoxBody<Bytes, E>
where
    E: Send + 'static,
{
    fn try_replay(self, limit: usize) -> (Self, Option<Self>) {
        match drain_ready(self, limit) {
            Drained::Untouched(body) => (body, None),
            Drained::Partial(body) => (body.boxed_unsync(), None),
            Drained::Complete(frames) => (
                ResponseBody::<Self>::complete(clone_frames(&frames)).boxed_unsync(),
                Some(ResponseBody::<Self>::complete(frames).boxed_unsync()),
            ),
        }
    }
}

fn fits(hint: &SizeHint, limit: usize) -> bool {
    hint.exact()
        .is_some_and(|size| usize::try_from(size).is_ok_and(|size| size <= limit))
}

/// What [`drain_ready`] found.
pub(crate) enum Drained<B: Body> {
    /// The first poll was pending: nothing was read.
    Untouched(B),
    /// Some frames were read, then the body was pending, over the limit, or failed.
    Partial(ResponseBody<B>),
    /// The whole body, every frame of it.
    Complete(VecDeque<Frame<Bytes>>),
}

/// Reads the frames of `body` that are available without waiting, up to `limit` bytes of data.
pub(crate) fn drain_ready<B>(mut body: B, limit: usize) -> Drained<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    // Polling with a waker that does nothing is fine: a pending body registers it, and the
    // HTTP client that polls next registers its own.
    let mut cx = Context::from_waker(Waker::noop());
    let mut frames = VecDeque::new();
    let mut size = 0usize;
    loop {
        match Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Ready(None) => return Drained::Complete(frames),
            Poll::Ready(Some(Ok(frame))) => {
                size = size.saturating_add(frame.data_ref().map_or(0, Bytes::len));
                frames.push_back(frame);
                if size > limit {
                    return Drained::Partial(ResponseBody::prefixed(frames, None, body));
                }
            }
            Poll::Ready(Some(Err(error))) => {
                return Drained::Partial(ResponseBody::prefixed(frames, Some(error), body));
            }
            Poll::Pending if frames.is_empty() => return Drained::Untouched(body),
            Poll::Pending => return Drained::Partial(ResponseBody::prefixed(frames, None, body)),
        }
    }
}

pub(crate) fn clone_frames(frames: &VecDeque<Frame<Bytes>>) -> VecDeque<Frame<Bytes>> {
    frames
        .iter()
        .filter_map(|frame| match (frame.data_ref(), frame.trailers_ref()) {
            (Some(data), _) => Some(Frame::data(data.clone())),
            (None, Some(trailers)) => Some(Frame::trailers(trailers.clone())),
            (None, None) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::adapter::test_bodies::{Boxed, chunks, text};
    use futures_util::stream;
    use http_body_util::StreamBody;
    use std::convert::Infallible;

    /// A body whose first frame is not ready yet: a stream still being produced.
    fn pending_then(part: &'static str) -> Boxed {
        let later = async move {
            tokio::task::yield_now().await;
            Ok::<_, Infallible>(Frame::data(Bytes::from_static(part.as_bytes())))
        };
        StreamBody::new(stream::once(later)).boxed()
    }

    #[tokio::test]
    async fn full_bodies_within_the_limit_are_cloned() {
        let (first, copy) = Full::new(Bytes::from_static(b"hello")).try_replay(5);
        assert_eq!(text(first).await, "hello");
        assert_eq!(text(copy.unwrap()).await, "hello");
        let (first, copy) = Full::new(Bytes::from_static(b"hello")).try_replay(4);
        assert!(copy.is_none());
        assert_eq!(text(first).await, "hello");
    }

    #[tokio::test]
    async fn ready_boxed_bodies_are_buffered_in_order() {
        let (first, copy) = chunks(&["a", "b", "c"]).try_replay(16);
        assert_eq!(text(first).await, "abc");
        assert_eq!(text(copy.unwrap()).await, "abc");
    }

    #[tokio::test]
    async fn over_the_limit_nothing_is_lost() {
        let (first, copy) = chunks(&["aaaa", "bbbb", "cccc"]).try_replay(5);
        assert!(copy.is_none());
        assert_eq!(text(first).await, "aaaabbbbcccc");
    }

    #[tokio::test]
    async fn streams_still_being_produced_are_not_waited_for() {
        let (first, copy) = pending_then("later").try_replay(1024);
        assert!(copy.is_none());
        assert_eq!(text(first).await, "later");
    }
}
