//! The body step both adapters share: [`read_prefix`] reads the first bytes of a response for
//! the classifier, and [`ResponseBody`] hands the response back intact, what was read put back
//! in front, in order. Generic over [`http_body::Body`] (`reqwest::Body` is one).

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The response body [`AuthService`](super::tower::AuthService) returns: the inner service's body,
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
    #[cfg_attr(not(feature = "tower"), allow(dead_code))] // the reqwest adapter wraps only read bodies
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

    /// The whole body as one buffer, when it was read to its end; the body itself otherwise.
    #[cfg(feature = "reqwest")]
    pub(crate) fn into_bytes(self) -> Result<Bytes, Self> {
        if self.rest.is_some() || self.error.is_some() {
            return Err(self);
        }
        let mut data = self
            .frames
            .into_iter()
            .filter_map(|frame| frame.into_data().ok());
        let Some(first) = data.next() else {
            return Ok(Bytes::new());
        };
        let Some(second) = data.next() else {
            return Ok(first);
        };
        let mut joined = bytes::BytesMut::from(first);
        joined.extend_from_slice(&second);
        data.for_each(|chunk| joined.extend_from_slice(&chunk));
        Ok(joined.freeze())
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
    use crate::adapter::test_bodies::{chunks, text};

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
