//! What every accepted connection is given before its first request.
//!
//! **A write timeout.** A client that stops reading leaves actix-web's
//! HTTP/1 dispatcher waiting for the socket to become writable, and while
//! it waits it polls nothing else: not the response body (an activity
//! stream cannot notice that it should end), and none of its own timers
//! (`keep_alive` counts only between requests, `client_disconnect_timeout`
//! only once the connection is closing). Nothing in the process can time
//! that write out, so the kernel does: `TCP_USER_TIMEOUT` closes a
//! connection whose sent data stays unacknowledged, or unsent behind a
//! zero window, for longer than `HTTP_WRITE_TIMEOUT`. The write fails, the
//! dispatcher drops the connection, and with it the response body: an
//! activity stream's slot, subscription and buffers are released at that
//! moment. A client that reads, however slowly, opens its window again and
//! is never cut; one that has gone away without a word (a sleeping laptop,
//! a dropped route) is found within the timeout instead of the kernel's
//! default of about fifteen minutes of retransmissions.
//!
//! Linux only (`TCP_USER_TIMEOUT`); elsewhere the option is not set and a
//! client that never reads keeps its connection until the kernel gives up.

use std::any::Any;
use std::time::Duration;

use actix_web::dev::Extensions;

/// The `on_connect` callback that gives every plain TCP connection the
/// write timeout `timeout`.
pub fn on_connect(timeout: Duration) -> impl Fn(&dyn Any, &mut Extensions) + Send + Sync + 'static {
    move |connection, _| {
        if let Some(tcp) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
            set_write_timeout(tcp, timeout);
        }
    }
}

#[cfg(target_os = "linux")]
fn set_write_timeout(tcp: &actix_web::rt::net::TcpStream, timeout: Duration) {
    if let Err(error) = socket2::SockRef::from(tcp).set_tcp_user_timeout(Some(timeout)) {
        tracing::warn!(%error, "cannot set the connection's write timeout (TCP_USER_TIMEOUT)");
    }
}

#[cfg(not(target_os = "linux"))]
fn set_write_timeout(_: &actix_web::rt::net::TcpStream, _: Duration) {}
