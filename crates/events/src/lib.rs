//! Request events: one record per request the proxy handles (allowed,
//! blocked or failed upstream), with the field names security teams map in
//! their SIEM, and the sinks that write them.
//!
//! Producers call [`EventSender::send`], which never waits (it uses
//! `try_send`): events go into
//! a bounded channel, and when it is full the event is counted as dropped
//! and logged, so a slow sink can never delay a request.

mod event;
mod sink;

pub use event::{Event, EventCategory, ALLOWED_EVENT_NAME};
pub use sink::{
    event_channel, EventReceiver, EventSender, JsonLinesSink, SinkError, FLUSH_INTERVAL,
};
