//! Bodies: [`ResponseBody`] hands a response back intact after its first bytes were read for
//! classification; [`ReplayBody`] says whether a request body can be sent a second time.

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::{BoxBody, UnsyncBoxBody};
use http_body_util::{BodyExt, Empty, Full};
use std::collections::VecDeque;
use std::fmt;
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

/// The response body [`AuthService`](super::AuthService) returns: the inner service's body,
/// with whatever was read of it for classification put back in front, in order. Most
/// responses are never read and pass through untouched.
pub struct ResponseBody<B: Body> {
    frames: VecDeque<Frame<Bytes>>,
    error: Option<B::Error>,
    /// `None` once the inner body was read to its end (or failed).
    rest: Option<B>,
}

impl<B: Body> ResponseBody<B> {
    /// Wraps `body` untouched.
    pub fn new(body: B) -> Self {
        Self::prefixed(VecDeque::new(), None, body)
    }

    pub(crate) fn prefixed(
        frames: VecDeque<Frame<Bytes>>,
        error: Option<B::Error>,
        rest: B,
    ) -> Self {
        Self {
            frames,
            error,
            rest: Some(rest),
        }
    }

    /// A body that is only `frames` (the inner body was read to its end).
    pub(crate) fn complete(frames: VecDeque<Frame<Bytes>>) -> Self {
        Self {
            frames,
            error: None,
            rest: None,
        }
    }
}

// No field is ever pinned: the inner body is polled through `Pin::new`, which needs it `Unpin`.
impl<B: Body + Unpin> Unpin for ResponseBody<B> {}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        if let Some(frame) = this.frames.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        if let Some(error) = this.error.take() {
            this.rest = None;
            return Poll::Ready(Some(Err(error)));
        }
        match &mut this.rest {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
            && self.error.is_none()
            && self.rest.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let buffered = self
            .frames
            .iter()
            .filter_map(|frame| frame.data_ref().map(|data| data.len() as u64))
            .sum::<u64>();
        if self.error.is_some() {
            let mut hint = SizeHint::new();
            hint.set_lower(buffered);
            return hint;
        }
        let Some(rest) = &self.rest else {
            return SizeHint::with_exact(buffered);
        };
        let inner = rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(buffered));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(buffered));
        }
        hint
    }
}

impl<B: Body> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("buffered_frames", &self.frames.len())
            .field("failed", &self.error.is_some())
            .field("ended", &self.rest.is_none())
            .finish()
    }
}

/// Reads up to `limit` bytes of `body` (stopping at a frame boundary past it) and returns them,
/// contiguous, with the body rebuilt to yield everything in order.
pub(crate) async fn read_prefix<B>(mut body: B, limit: usize) -> (Bytes, ResponseBody<B>)
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut frames = VecDeque::new();
    let mut size = 0usize;
    let mut error = None;
    let mut ended = false;
    while size < limit {
        match body.frame().await {
            None => {
                ended = true;
                break;
            }
            Some(Ok(frame)) => {
                size = size.saturating_add(frame.data_ref().map_or(0, Bytes::len));
                frames.push_back(frame);
            }
            Some(Err(e)) => {
                error = Some(e);
                break;
            }
        }
    }
    let mut data = frames.iter().filter_map(Frame::data_ref);
    let prefix = match (data.next(), data.next()) {
        (None, _) => Bytes::new(),
        (Some(only), None) => only.clone(),
        (Some(_), Some(_)) => {
            let mut joined = Vec::with_capacity(size);
            for chunk in frames.iter().filter_map(Frame::data_ref) {
                joined.extend_from_slice(chunk);
            }
            Bytes::from(joined)
        }
    };
    let body = if ended {
        ResponseBody::complete(frames)
    } else {
        ResponseBody::prefixed(frames, error, body)
    };
    (prefix, body)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use futures_util::stream;
    use http_body_util::StreamBody;
    use std::convert::Infallible;

    type Boxed = BoxBody<Bytes, Infallible>;

    async fn text<B: Body<Data = Bytes> + Unpin>(body: B) -> String
    where
        B::Error: fmt::Debug,
    {
        let bytes = body.collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn chunks(parts: &'static [&'static str]) -> Boxed {
        StreamBody::new(stream::iter(parts.iter().map(|p| {
            Ok::<_, Infallible>(Frame::data(Bytes::from_static(p.as_bytes())))
        })))
        .boxed()
    }

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

    #[tokio::test]
    async fn read_prefix_hands_back_everything() {
        let (prefix, body) = read_prefix(chunks(&["ab", "cd", "ef"]), 3).await;
        assert_eq!(&prefix[..], b"abcd");
        assert_eq!(text(body).await, "abcdef");
        let (prefix, body) = read_prefix(chunks(&["ab"]), 100).await;
        assert_eq!(&prefix[..], b"ab");
        assert!(body.size_hint().exact() == Some(2));
        assert_eq!(text(body).await, "ab");
    }
}
