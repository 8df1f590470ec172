//! Bodies for the adapters' unit tests: a body made of ready chunks, and a body read back as
//! text. Shared by the response-body and replay-body tests.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use futures_util::stream;
use http_body::{Body, Frame};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, StreamBody};
use std::convert::Infallible;
use std::fmt;

/// The boxed body the tests build.
pub(crate) type Boxed = BoxBody<Bytes, Infallible>;

/// The whole of `body`, as UTF-8 text.
pub(crate) async fn text<B: Body<Data = Bytes> + Unpin>(body: B) -> String
where
    B::Error: fmt::Debug,
{
    let bytes = body.collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// A body whose frames are `parts`, every one ready at once.
pub(crate) fn chunks(parts: &'static [&'static str]) -> Boxed {
    StreamBody::new(stream::iter(parts.iter().map(|p| {
        Ok::<_, Infallible>(Frame::data(Bytes::from_static(p.as_bytes())))
    })))
    .boxed()
}
