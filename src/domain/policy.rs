//! What a deployment allows of the URLs and credentials clients give. Built
//! by `config` from `ENVIRONMENT` (the domain reads no configuration).

/// Development allows plain `http` webhook URLs and push notifications with
/// no authentication, for local receivers; production allows neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputPolicy {
    /// `http://` URLs are accepted where `https://` is expected.
    pub plain_http: bool,
    /// A push-notification config may have `authentication_type: none`.
    pub unauthenticated_push: bool,
}

impl InputPolicy {
    pub const PRODUCTION: Self = Self {
        plain_http: false,
        unauthenticated_push: false,
    };
    pub const DEVELOPMENT: Self = Self {
        plain_http: true,
        unauthenticated_push: true,
    };
}
