//! The shape of the small outer layers (`update_metrics`, `real_ip`, `request_id`, `access_log`,
//! `common_headers`, `refusals`) and of overload shedding: a concern that looks at the request on the way in, may answer
//! it at once, and looks at the response on the way out. [`AroundLayer`] turns one into a tower
//! layer that neither boxes a future nor clones its inner service per request, so a concern
//! costs a layer of its own without costing an allocation.
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::extract::Request;
use axum::response::Response;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

/// One concern of the outer layers.
pub trait Around: Clone + Send + Sync + 'static {
    /// What `before` hands to `after` (dropped with the request if the client goes away).
    type State: Send;

    /// On the way in: the state for `after`, or the response that ends the request here (the
    /// layers further in are not called; `after` still runs on it).
    fn before(&self, req: &mut Request) -> (Self::State, Option<Response>);

    /// On the way out.
    fn after(state: Self::State, res: &mut Response);
}

/// `concern` as a tower layer.
#[derive(Clone)]
pub struct AroundLayer<A>(A);

impl<A> AroundLayer<A> {
    pub fn new(concern: A) -> Self {
        AroundLayer(concern)
    }
}

impl<A: Clone, S> Layer<S> for AroundLayer<A> {
    type Service = AroundService<A, S>;

    fn layer(&self, inner: S) -> Self::Service {
        AroundService {
            concern: self.0.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct AroundService<A, S> {
    concern: A,
    inner: S,
}

impl<A, S> Service<Request> for AroundService<A, S>
where
    A: Around,
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = AroundFuture<A, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let (state, answer) = self.concern.before(&mut req);
        let inner = match answer {
            // `inner` was made ready by `poll_ready` and is called at once, so it is neither
            // cloned nor held past this call.
            None => Inner::Running {
                future: self.inner.call(req),
            },
            Some(res) => Inner::Answered { res: Some(res) },
        };
        AroundFuture {
            inner,
            state: Some(state),
        }
    }
}

pin_project! {
    pub struct AroundFuture<A: Around, F> {
        #[pin]
        inner: Inner<F>,
        state: Option<A::State>,
    }
}

pin_project! {
    #[project = InnerProj]
    enum Inner<F> {
        Running { #[pin] future: F },
        Answered { res: Option<Response> },
    }
}

impl<A, F, E> Future for AroundFuture<A, F>
where
    A: Around,
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = match this.inner.project() {
            InnerProj::Running { future } => ready!(future.poll(cx))?,
            InnerProj::Answered { res } => res.take().unwrap_or_default(),
        };
        if let Some(state) = this.state.take() {
            A::after(state, &mut res);
        }
        Poll::Ready(Ok(res))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::body::Body;
    use http::HeaderValue;
    use tower::{ServiceBuilder, ServiceExt};

    use super::*;

    /// Refuses `/no`, tags every response, counts what reached `after`.
    #[derive(Clone, Default)]
    struct Tag(Arc<AtomicUsize>);

    impl Around for Tag {
        type State = Arc<AtomicUsize>;
        fn before(&self, req: &mut Request) -> (Self::State, Option<Response>) {
            let answer = (req.uri().path() == "/no").then(|| {
                let mut r = Response::new(Body::empty());
                *r.status_mut() = http::StatusCode::FORBIDDEN;
                r
            });
            (self.0.clone(), answer)
        }
        fn after(state: Self::State, res: &mut Response) {
            state.fetch_add(1, Ordering::SeqCst);
            res.headers_mut()
                .insert("x-tag", HeaderValue::from_static("1"));
        }
    }

    #[tokio::test]
    async fn before_may_answer_and_after_sees_every_response() {
        let reached = Arc::new(AtomicUsize::new(0));
        let tag = Tag::default();
        let svc = {
            let reached = reached.clone();
            ServiceBuilder::new()
                .layer(AroundLayer::new(tag.clone()))
                .service_fn(move |_req: Request| {
                    reached.fetch_add(1, Ordering::SeqCst);
                    async { Ok::<_, Infallible>(Response::new(Body::empty())) }
                })
        };
        let get = |path: &str| Request::get(path).body(Body::empty()).unwrap();
        let ok = svc.clone().oneshot(get("/yes")).await.unwrap();
        assert_eq!(ok.status(), 200);
        assert_eq!(ok.headers()["x-tag"], "1");
        let no = svc.oneshot(get("/no")).await.unwrap();
        assert_eq!(no.status(), 403);
        assert_eq!(no.headers()["x-tag"], "1");
        // The refused request never reached the service; both reached `after`.
        assert_eq!(reached.load(Ordering::SeqCst), 1);
        assert_eq!(tag.0.load(Ordering::SeqCst), 2);
    }
}
