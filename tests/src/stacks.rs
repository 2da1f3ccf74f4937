//! The hypervisor stacks' margin, read from its `stacks:` lines
//! (`hypervisor/src/arch/stackmark.rs`: each stack is painted at boot; the
//! line, printed after every domain ends and at a clean exit, gives the
//! deepest use of each CPU's stack and of any IST stack, in bytes).

use crate::outcome::Outcome;

/// The deepest use the tests accept, as a fraction of a stack: half. The
/// domain-create path once came within 2 KiB of a 64 KiB stack (issue 13);
/// keeping half of every stack unused leaves room for the next feature.
pub const MAX_USED_FRACTION: (u64, u64) = (1, 2);

/// One `stacks:` line, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stacks {
    /// Bytes of each CPU's own stack.
    pub size: u64,
    /// Bytes of each IST stack.
    pub ist_size: u64,
    /// Deepest use of each CPU's stack, by CPU number.
    pub cpus: Vec<(u32, u64)>,
    /// Deepest use of any IST stack.
    pub ist_max: u64,
    /// Deepest use of the boot stack (the boot CPU leaves it when boot is
    /// done) and its size (0 if not reported).
    pub boot: (u64, u64),
}

/// Parses `stacks: size=S ist_size=I cpu0=U ... ist_max=M`.
pub fn parse(line: &str) -> Option<Stacks> {
    let rest = &line[line.find("stacks: ")? + "stacks: ".len()..];
    let mut s = Stacks {
        size: 0,
        ist_size: 0,
        cpus: Vec::new(),
        ist_max: 0,
        boot: (0, 0),
    };
    for field in rest.split_whitespace() {
        let (k, v) = field.split_once('=')?;
        let v: u64 = v.parse().ok()?;
        match k {
            "size" => s.size = v,
            "ist_size" => s.ist_size = v,
            "ist_max" => s.ist_max = v,
            "boot" => s.boot.0 = v,
            "boot_size" => s.boot.1 = v,
            _ => s.cpus.push((k.strip_prefix("cpu")?.parse().ok()?, v)),
        }
    }
    (s.size > 0 && s.ist_size > 0 && !s.cpus.is_empty()).then_some(s)
}

/// The last `stacks:` line of a run (marks only grow: the last is the
/// deepest); panics, naming the test, if there is none.
pub fn last(o: &Outcome) -> Stacks {
    o.lines
        .iter()
        .rev()
        .find_map(|l| parse(l))
        .unwrap_or_else(|| panic!("{}: no `stacks:` line in the serial log", o.test))
}

/// Asserts every stack of the run kept its margin ([`MAX_USED_FRACTION`]),
/// printing the marks so a run's log shows them; returns them.
pub fn assert_margin(o: &Outcome) -> Stacks {
    let s = last(o);
    let (num, den) = MAX_USED_FRACTION;
    println!("{}: {s:?}", o.test);
    for &(cpu, used) in &s.cpus {
        assert!(
            used > 0 && used <= s.size,
            "{}: cpu{cpu} stack use {used} is not within its {} bytes (the paint was not read)",
            o.test,
            s.size
        );
        assert!(
            used * den <= s.size * num,
            "{}: cpu{cpu} used {used} of its {} stack bytes: more than {num}/{den}",
            o.test,
            s.size
        );
    }
    let (boot, boot_size) = s.boot;
    assert!(
        boot_size > 0 && boot > 0 && boot * den <= boot_size * num,
        "{}: the boot stack used {boot} of its {boot_size} bytes: more than {num}/{den} (or no mark)",
        o.test
    );
    assert!(
        s.ist_max * den <= s.ist_size * num,
        "{}: an IST stack used {} of its {} bytes: more than {num}/{den}",
        o.test,
        s.ist_max,
        s.ist_size
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_hypervisor_line() {
        let s = parse(
            "stacks: size=131072 ist_size=16384 cpu0=30000 cpu1=2100 ist_max=0 boot=40000 boot_size=65536",
        )
        .unwrap_or_else(|| panic!("not parsed"));
        assert_eq!(s.boot, (40000, 65536));
        assert_eq!(s.size, 131072);
        assert_eq!(s.ist_size, 16384);
        assert_eq!(s.cpus, vec![(0, 30000), (1, 2100)]);
        assert_eq!(s.ist_max, 0);
        assert_eq!(parse("stacks: size=1 ist_size=1 ist_max=0"), None);
        assert_eq!(parse("stacks: size=x"), None);
        assert_eq!(parse("no stacks here"), None);
    }
}
