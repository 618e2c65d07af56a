//! Bearer-token authentication (SPEC §2, §4; issue #3 builds the layer). What later layers and
//! handlers rely on is [`Caller`], put in the request extensions by the auth layer from a
//! verified token only: a client can never choose who it is.
use std::sync::Arc;

/// The verified caller: the token's `sub`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    sub: Arc<str>,
}

impl Caller {
    pub fn new(sub: impl Into<Arc<str>>) -> Self {
        Caller { sub: sub.into() }
    }

    pub fn user_id(&self) -> &str {
        &self.sub
    }
}
