//! The disk bench's repeatable figure (tools/xtask/src/diskbench.rs):
//! instructions per request, from the `insncount` plugin's marks.
//!
//! Both sides put a marker instruction (tools/insncount `MARKER`) right
//! before and right after each workload's loop (dom0/src/dev/mark.rs,
//! tools/xtask/diskload/diskload.rs) and print the workload's `diskbench`
//! line right after the second. The plugin (`marks=FILE`) writes the
//! vCPU's counts at each marker in execution order, so the k-th pair of
//! marks is the k-th `diskbench` line's span: [`spans`] pairs them, with
//! no assumption about which disk ran first.

use std::path::Path;

use xtask::bail;
use xtask::error::{Context, Result};
use xtask::serial;

/// Instructions the machine ran over one workload's loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// In the hypervisor's code (0 on the Linux side: no hypervisor).
    pub hv: u64,
    /// Everything else: dom0, or Linux and `diskload`.
    pub guest: u64,
}

impl Span {
    pub fn total(&self) -> u64 {
        self.hv + self.guest
    }
}

/// `(in, out)` at each mark, in order, from the plugin's `marks=` file.
pub fn read(path: &Path) -> Result<Vec<(u64, u64)>> {
    let text = std::fs::read_to_string(path).context(|| {
        format!(
            "reading {} (did QEMU run the plugin's exit hook?)",
            path.display()
        )
    })?;
    parse(&text).context(|| format!("{}", path.display()))
}

fn parse(text: &str) -> Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    for (k, line) in text.lines().enumerate() {
        let get = |key: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
                .and_then(serial::parse_number)
        };
        match (get("mark"), get("cpu"), get("in"), get("out")) {
            // One CPU: the bench machines have one (diskbench.rs).
            (Some(m), Some(0), Some(i), Some(o)) if m == k as u64 => out.push((i, o)),
            _ => bail!("unexpected mark line `{line}` (want mark={k} cpu=0 in=N out=N)"),
        }
    }
    Ok(out)
}

/// Pairs `marks` with the `diskbench` lines among `lines` (module doc):
/// one span per line, in order. Fails unless there are exactly two marks
/// per line and each span's counts grow.
pub fn spans(marks: &[(u64, u64)], lines: &[String]) -> Result<Vec<(String, Span)>> {
    let bench: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("diskbench ") && l.contains(" ops="))
        .collect();
    if marks.len() != 2 * bench.len() {
        bail!(
            "{} marks for {} `diskbench` lines: want two per workload (a workload failed, \
             or a marker ran elsewhere)",
            marks.len(),
            bench.len()
        );
    }
    let mut out = Vec::new();
    for (l, m) in bench.iter().zip(marks.chunks_exact(2)) {
        let (a, b) = (m[0], m[1]);
        let (Some(hv), Some(guest)) = (b.0.checked_sub(a.0), b.1.checked_sub(a.1)) else {
            bail!("marks {a:?} then {b:?} around `{l}`: the counts went down");
        };
        out.push(((*l).clone(), Span { hv, guest }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_marks_with_lines() {
        let m = parse("mark=0 cpu=0 in=10 out=100\nmark=1 cpu=0 in=15 out=400\n").ok();
        assert_eq!(m, Some(vec![(10, 100), (15, 400)]));
        let lines = vec![
            "dom0: ready".to_string(),
            "dom0: diskbench 0000:00:03.0 virtio-blk seq-write ops=16 bytes=1 ns=1".to_string(),
        ];
        let s = spans(&[(10, 100), (15, 400)], &lines).ok();
        assert_eq!(s.map(|v| v[0].1), Some(Span { hv: 5, guest: 300 }));
        assert!(spans(&[(10, 100)], &lines).is_err(), "one mark short");
        assert!(spans(&[(10, 100), (5, 400)], &lines).is_err(), "count fell");
        assert!(parse("mark=1 cpu=0 in=1 out=1\n").is_err(), "out of order");
        assert!(parse("mark=0 cpu=1 in=1 out=1\n").is_err(), "second CPU");
    }
}
