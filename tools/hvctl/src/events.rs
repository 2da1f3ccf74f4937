//! `hvctl events`: subscribes to dom0's domain events and prints each as
//! one JSON line as dom0 sent it (`{"event":"domain","change":"paused",
//! "domain":3,"name":"web","uuid":"..."}`), so a fleet engine or a script
//! follows every domain without polling `list`. Runs until dom0 closes the
//! connection, or until `--count` events were printed.

use std::io::Write;

use kestrel_toolstack::proto::{Event, Op, Reply, ServerLine};

use crate::client::Client;
use crate::error::Error;

/// Prints domain events; `count` 0: until the connection ends.
pub fn run(mut client: Client, count: u64) -> Result<String, Error> {
    match client.call(Op::Subscribe)? {
        Reply::Done => {}
        other => {
            return Err(Error::Protocol(format!(
                "unexpected reply to subscribe: {other:?}"
            )));
        }
    }
    // Events come when domains change: no time limit from here on.
    client.no_timeout()?;
    // On stderr, so stdout holds only events: from here on none is missed.
    eprintln!("hvctl: subscribed: one JSON line per domain change");
    let mut stdout = std::io::stdout();
    let mut printed = 0;
    while count == 0 || printed < count {
        let ServerLine::Event(e @ Event::Domain(_)) = client.lines.next()? else {
            continue;
        };
        let line = serde_json::to_string(&e)
            .map_err(|err| Error::Protocol(format!("cannot encode event: {err}")))?;
        writeln!(stdout, "{line}")
            .and_then(|()| stdout.flush())
            .map_err(|err| Error::Connection(format!("writing to stdout: {err}")))?;
        printed += 1;
    }
    Ok(String::new())
}
