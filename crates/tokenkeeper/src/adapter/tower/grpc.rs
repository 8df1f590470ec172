//! gRPC over the tower adapter (feature `tonic`): tonic's body is replayable, a tokenkeeper
//! [`Error`] becomes a `tonic::Status`, and [`SnapshotInterceptor`] for code that keeps the
//! interceptor style. The `UNAUTHENTICATED` rule is the classifier's:
//! [`classify::rules::grpc_unauthenticated`](crate::classify::rules::grpc_unauthenticated).

use super::replay_body::{Drained, ReplayBody, clone_frames, drain_ready};
use crate::adapter::response_body::ResponseBody;
use crate::config_error::ConfigError;
use crate::error::Error;
use crate::extensions::NoAuth;
use crate::origin::Decision;
use crate::session::Session;
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

/// Unary and server-streaming calls are replayable (their one message is encoded at once);
/// client and bidirectional streams are, only if every message is already there.
impl ReplayBody for tonic::body::Body {
    fn try_replay(self, limit: usize) -> (Self, Option<Self>) {
        match drain_ready(self, limit) {
            Drained::Untouched(body) => (body, None),
            Drained::Partial(body) => (Self::new(body), None),
            Drained::Complete(frames) => (
                Self::new(ResponseBody::<Self>::complete(clone_frames(&frames))),
                Some(Self::new(ResponseBody::<Self>::complete(frames))),
            ),
        }
    }
}

/// The gRPC status for a tokenkeeper error: `UNAUTHENTICATED` when the user must log in,
/// `UNAVAILABLE` when the refresh endpoint could not be reached, `INTERNAL` otherwise. The
/// error is the status's source.
impl From<Error> for Status {
    fn from(error: Error) -> Self {
        let code = match &error {
            Error::LoginRequired | Error::SessionExpired(_) => Code::Unauthenticated,
            Error::RefreshUnavailable(_) | Error::RefreshCancelled => Code::Unavailable,
            _ => Code::Internal,
        };
        let mut status = Status::new(code, error.to_string());
        status.set_source(std::sync::Arc::new(error));
        status
    }
}

/// A tonic `Interceptor` that attaches [`Session::snapshot`], for code that keeps the
/// interceptor style (feature `tonic`). Made by [`Session::interceptor`].
///
/// It never waits: it attaches the current token and, when that token is near its expiry,
/// starts a background refresh, so with [`RefreshMode::Proactive`](crate::RefreshMode)
/// (the default) steady traffic never carries an expired token. What it cannot do is react
/// to a refusal: a call refused with `UNAUTHENTICATED` fails (the next one carries the
/// refreshed token once the refresh is done). [`AuthLayer`](super::AuthLayer)
/// retries instead.
///
/// ```no_run
/// # async fn example(session: tokenkeeper::Session) -> Result<(), Box<dyn std::error::Error>> {
/// let url = "http://127.0.0.1:50051";
/// let channel = tonic::transport::Endpoint::from_static(url).connect().await?;
/// let channel = tonic::service::interceptor::InterceptedService::new(channel, session.interceptor(url)?);
/// // `YourClient::new(channel)`, or `tonic::client::Grpc::new(channel)`.
/// # let _ = channel; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SnapshotInterceptor {
    session: Session,
}

impl Session {
    /// A tonic interceptor attaching this session's token to every call on a channel to
    /// `origin` (feature `tonic`). Fails if the session does not attach to `origin`: an
    /// interceptor does not see where a call goes, so the origin is checked here, once.
    pub fn interceptor(&self, origin: &str) -> Result<SnapshotInterceptor, Error> {
        let url = url::Url::parse(origin)
            .map_err(|e| ConfigError::new(format!("`{origin}` is not a URL: {e}")))?;
        match self.decide(&url) {
            Decision::Attach => Ok(SnapshotInterceptor {
                session: self.clone(),
            }),
            Decision::Insecure => Err(Error::InsecureTransport {
                origin: url.origin().ascii_serialization(),
            }),
            Decision::PassThrough => Err(ConfigError::new(format!(
                "the session does not attach tokens to `{}`",
                url.origin().ascii_serialization()
            ))
            .into()),
        }
    }
}

impl tonic::service::Interceptor for SnapshotInterceptor {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if request.metadata().contains_key("authorization")
            || request.extensions().get::<NoAuth>().is_some()
        {
            return Ok(request);
        }
        let credential = self.session.snapshot()?;
        let mut value = MetadataValue::try_from(credential.header_value().as_bytes())
            .map_err(|_| Status::internal("the access token is not a valid header value"))?;
        value.set_sensitive(true);
        request.metadata_mut().insert("authorization", value);
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::super::ReplayBody;
    use crate::{Error, LogoutReason};
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full, StreamBody};
    use tonic::body::Body;
    use tonic::{Code, Status};

    async fn bytes(body: Body) -> Bytes {
        body.collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn a_complete_tonic_body_is_replayable_and_a_pending_one_is_not() {
        let (first, copy) = Body::new(Full::new(Bytes::from_static(b"message"))).try_replay(64);
        assert_eq!(&bytes(first).await[..], b"message");
        assert_eq!(&bytes(copy.unwrap()).await[..], b"message");

        let later = futures_util::stream::once(async {
            tokio::task::yield_now().await;
            Ok::<_, Status>(http_body::Frame::data(Bytes::from_static(b"later")))
        });
        let (first, copy) = Body::new(StreamBody::new(later)).try_replay(64);
        assert!(copy.is_none());
        assert_eq!(&bytes(first).await[..], b"later");
    }

    #[test]
    fn errors_map_to_grpc_codes() {
        let code = |e: Error| Status::from(e).code();
        assert_eq!(code(Error::LoginRequired), Code::Unauthenticated);
        assert_eq!(
            code(Error::SessionExpired(LogoutReason::TokenInvalid)),
            Code::Unauthenticated
        );
        assert_eq!(code(Error::RefreshCancelled), Code::Unavailable);
        assert_eq!(code(crate::ConfigError::new("x").into()), Code::Internal);
        let status = Status::from(Error::LoginRequired);
        assert!(matches!(
            super::super::auth_error(&status),
            Some(Error::LoginRequired)
        ));
    }
}
