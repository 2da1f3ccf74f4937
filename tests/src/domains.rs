//! Checks on the domains a run started: how each ended (`domain-end:`),
//! what it printed (`[dom<id> <name>] ...`), why it was killed, and the
//! `domains: all ... ended` summary with its free-memory figure.

use xtask::serial::{self, AllEnded, DomainEnd};

use crate::Outcome;

/// Prints the whole run (command, serial log, emulator output) if the test
/// fails while it is alive. Runs shared between tests live in statics, so
/// the `Outcome`'s own report on drop never happens for them.
pub struct ReportOnPanic<'a>(pub &'a Outcome);

impl Drop for ReportOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.0.report());
        }
    }
}

/// What domain `d` printed after `<prefix>: ` (self-checking guests put
/// their own name first), prefix removed.
pub fn said<'a>(o: &'a Outcome, d: &DomainEnd, prefix: &str) -> Vec<&'a str> {
    let p = format!("{prefix}: ");
    o.console_of(d)
        .into_iter()
        .filter_map(|l| l.strip_prefix(p.as_str()))
        .collect()
}

impl Outcome {
    /// Every `domain-end:` line, parsed, in order.
    pub fn domain_ends(&self) -> Vec<DomainEnd> {
        DomainEnd::all(&self.lines).unwrap_or_else(|e| panic!("{}: {e}", self.test))
    }

    /// The end of domain `name`, which must have ended exactly once.
    pub fn domain_end(&self, name: &str) -> DomainEnd {
        let ends: Vec<DomainEnd> = self
            .domain_ends()
            .into_iter()
            .filter(|d| d.name == name)
            .collect();
        match ends.as_slice() {
            [d] => d.clone(),
            [] => panic!("{}: no `domain-end:` line for {name}", self.test),
            _ => panic!("{}: {name} ended {} times: {ends:?}", self.test, ends.len()),
        }
    }

    /// Checks that domain `name` ended with `result` (`exited`, `crashed`,
    /// `killed`) and `code`, and returned its nested page tables.
    pub fn assert_domain(&self, name: &str, result: &str, code: i64) -> DomainEnd {
        let d = self.domain_end(name);
        assert_eq!(
            (d.result.as_str(), d.code),
            (result, code),
            "{}: domain {} ({name}) ended `{}` with code {}, expected `{result}` with code {code}",
            self.test,
            d.id,
            d.result,
            d.code
        );
        assert!(
            d.freed_table_frames > 0,
            "{}: domain {name} freed no nested-table frames",
            self.test
        );
        d
    }

    /// What domain `d` printed on its console.
    pub fn console_of(&self, d: &DomainEnd) -> Vec<&str> {
        serial::console(&self.lines, d.id, &d.name)
    }

    /// Checks that domain `d` printed a line containing `needle`.
    pub fn assert_printed(&self, d: &DomainEnd, needle: &str) {
        let out = self.console_of(d);
        assert!(
            out.iter().any(|l| l.contains(needle)),
            "{}: domain {} ({}) never printed `{needle}`; it printed {out:?}",
            self.test,
            d.id,
            d.name
        );
    }

    /// Checks that domain `name` was killed, and that its `domain <id>
    /// (<name>) killed: <reason>` line names one of `reasons`.
    pub fn assert_killed(&self, name: &str, reasons: &[&str]) -> DomainEnd {
        let d = self.assert_domain(name, "killed", -1);
        let prefix = format!("domain {} ({name}) killed: ", d.id);
        let Some(line) = self.line(&prefix) else {
            panic!("{}: no `{prefix}<reason>` line", self.test)
        };
        assert!(
            reasons.iter().any(|r| line.contains(r)),
            "{}: `{line}` names none of {reasons:?}",
            self.test
        );
        d
    }

    /// Checks that the `hello` guest ran as domain `name`: it greeted with
    /// its own domain id and exactly its module arguments, and exited 0.
    pub fn assert_hello_ran(&self, name: &str, args: &str) -> DomainEnd {
        let d = self.assert_domain(name, "exited", 0);
        self.assert_printed(&d, &format!("hello from domain {}: 8 MiB, pvabi ", d.id));
        self.assert_printed(&d, &format!("cmdline \"{args}\""));
        d
    }

    /// The `domains: all ... ended` line, if any.
    pub fn all_ended(&self) -> Option<AllEnded> {
        AllEnded::find(&self.lines).map(|r| r.unwrap_or_else(|e| panic!("{}: {e}", self.test)))
    }

    /// Domain `d`, a self-checking guest, printed no `FAILED` line (its
    /// lines after `<prefix>: `).
    pub fn assert_no_failed_check(&self, d: &DomainEnd, prefix: &str) {
        let failed: Vec<&str> = said(self, d, prefix)
            .into_iter()
            .filter(|l| l.contains("FAILED"))
            .collect();
        assert!(
            failed.is_empty(),
            "{}: {} FAILED:\n  {}",
            self.test,
            d.name,
            failed.join("\n  ")
        );
    }

    /// Domain `d`, a self-checking guest ([`said`] with `prefix`), printed
    /// no `FAILED` line and a `<N> checks, 0 failed` tally with N >= `min`.
    /// Returns N.
    pub fn assert_checks_passed(&self, d: &DomainEnd, prefix: &str, min: u64) -> u64 {
        self.assert_no_failed_check(d, prefix);
        let tally = said(self, d, prefix)
            .into_iter()
            .find_map(|l| l.strip_suffix(" failed")?.split_once(" checks, "))
            .and_then(|(n, m)| Some((n.parse::<u64>().ok()?, m.parse::<u64>().ok()?)));
        assert!(
            tally.is_some_and(|(n, m)| n >= min && m == 0),
            "{}: {} tally {tally:?}, want >= {min} checks, 0 failed",
            self.test,
            d.name
        );
        tally.map_or(0, |(n, _)| n)
    }

    /// Every frame came back: free memory once every domain had ended
    /// equals free memory at ready.
    pub fn assert_free_memory_back(&self) {
        let Some(a) = self.all_ended() else {
            panic!("{}: no `domains: all ... ended` line", self.test)
        };
        let at_ready = self.stats().free_bytes;
        assert_eq!(
            a.free_bytes,
            at_ready,
            "{}: {} bytes free after every domain ended, {at_ready} at ready: {} leaked",
            self.test,
            a.free_bytes,
            at_ready as i128 - a.free_bytes as i128
        );
    }

    /// Checks that all `domains` domains ended, `clean` of them with exit
    /// code 0, one `domain-end:` line each, and that every frame came back:
    /// free memory afterwards equals free memory at ready (`stats:`).
    pub fn assert_all_ended(&self, domains: u64, clean: u64) -> AllEnded {
        let Some(a) = self.all_ended() else {
            panic!("{}: no `domains: all ... ended` line", self.test)
        };
        assert_eq!(
            (a.domains, a.clean, a.unclean),
            (domains, clean, domains - clean),
            "{}: {a:?}",
            self.test
        );
        assert_eq!(
            self.domain_ends().len() as u64,
            domains,
            "{}: one `domain-end:` line per domain",
            self.test
        );
        self.assert_free_memory_back();
        a
    }
}
