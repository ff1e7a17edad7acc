//! The admin API's rate limit, per client IP (`admin.rate-limit`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::{AdminError, AdminState};

/// Answers 429 with `Retry-After` when the client is over the admin limit.
///
/// The client is the TCP peer (the listener is served with connect info); without it every
/// caller shares one bucket, which still bounds the API as a whole.
pub async fn limit_admin(
    State(st): State<Arc<AdminState>>,
    req: Request,
    next: Next,
) -> Result<Response, AdminError> {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    st.limits
        .check_admin(ip)
        .map_err(AdminError::TooManyRequests)?;
    Ok(next.run(req).await)
}
