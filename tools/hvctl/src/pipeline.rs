//! Requests kept in flight (issue 14): `upload_chunk` and `import_chunk`
//! used to wait for each reply before the next chunk, so each 32 KiB cost
//! a round trip in which dom0 had nothing to work on. Here up to
//! [`WINDOW`] bytes of requests are sent before the first reply is waited
//! for, and each reply (they come in order: dom0 answers a session's lines
//! one by one) lets the next request go.
//!
//! Nothing changes on the wire or in dom0, so it works with any dom0:
//! dom0 takes what TCP's receive window lets through (8 KiB,
//! dom0/src/net/mod.rs) and holds at most one record and one line of it,
//! however far ahead the client is; the rest waits in the client's socket.
//! dom0 still checks every chunk in order, and the first refusal drops
//! the transfer there: it is the error returned, the requests sent after it
//! are answered "no upload in progress" and those replies are skipped.

use std::collections::VecDeque;

use kestrel_toolstack::proto::Op;

use crate::client::{Client, op_name};
use crate::error::Error;

/// Bytes of requests in flight: four 32 KiB chunks (in base64, 4/3 as
/// many on the wire).
pub const WINDOW: usize = 4 * kestrel_toolstack::proto::UPLOAD_CHUNK_MAX;

/// Sends each `(request, bytes it carries)` of `ops`, keeping up to
/// [`WINDOW`] bytes unanswered; `done(n)` after each reply with the bytes
/// answered so far. Stops at the first refusal or failure (of a request,
/// or of `ops` making one: a file that cannot be read) and returns it.
pub fn run(
    client: &mut Client,
    ops: impl IntoIterator<Item = Result<(Op, usize), Error>>,
    mut done: impl FnMut(usize),
) -> Result<(), Error> {
    let mut in_flight: VecDeque<(u64, String, usize)> = VecDeque::new();
    let mut held = 0usize;
    let mut answered = 0usize;
    let mut ops = ops.into_iter().peekable();
    loop {
        // Send while the window has room (always at least one request).
        while let Some(next) = ops.peek() {
            let n = next.as_ref().map_or(0, |(_, n)| *n);
            if !in_flight.is_empty() && held.saturating_add(n) > WINDOW {
                break;
            }
            let Some(next) = ops.next() else { break };
            let (op, n) = next?;
            let what = op_name(&op);
            let id = client.sender.send(op)?;
            in_flight.push_back((id, what, n));
            held = held.saturating_add(n);
        }
        let Some((id, what, n)) = in_flight.pop_front() else {
            return Ok(());
        };
        client.wait(id, &what, false)?;
        held = held.saturating_sub(n);
        answered = answered.saturating_add(n);
        done(answered);
    }
}
