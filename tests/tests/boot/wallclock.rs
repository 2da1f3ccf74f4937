//! Wall-clock time (pvabi `TimeInfo::wall_clock_base_ns`): the hypervisor
//! reads the CMOS RTC at boot, and a guest (`wallclock`) reads the date
//! back through the PV clock with pvabi's `guest::time::utc_now`.
//!
//! | test | machine | asserts |
//! |---|---|---|
//! | `wallclock_qemu_rtc` | QEMU TCG (AMD-V), PVH, 1 CPU, `-rtc base=2020-01-02T03:04:05,clock=vm` and `-icount shift=0` (the RTC advances one ns per instruction, so boot takes well under its first second) | the hypervisor logged `wall clock: 2020-01-02T03:04:05Z`; the guest printed the same second and the base 1577934245 s; it exited 0 |
//! | `wallclock_bochs_rtc` | Bochs Haswell (VT-x), GRUB ISO, `time0` = 2020-01-01T00:00:00 (`xtask::bochs`), `sleep_ms=50` | the guest's date is a date of that day (Bochs sets the RTC in the host's time zone, so within 14 h of it), equal to or after what the hypervisor logged and under a minute later; after sleeping 50 ms the wall clock moved on by at least 50 ms; exit 0 |

use boot_tests::Outcome;
use boot_tests::artifacts::{guest, guest_module, shared_iso};
use boot_tests::bochs::{self, Pc};
use boot_tests::domains::ReportOnPanic;
use boot_tests::qemu::{PVH_TIMEOUT_S, pvh_vm, run};
use pvabi_dates::unix_of;

use crate::TEST_CMDLINE;

/// `date -u -d 2020-01-02T03:04:05 +%s`.
const QEMU_RTC_UNIX_S: u64 = 1_577_934_245;

/// The ISO 8601 date in the hypervisor's `wall clock:` line.
fn hypervisor_date(o: &Outcome) -> String {
    let l = o.expect_line("wall clock: ");
    let rest = l.split("wall clock: ").nth(1).unwrap_or("");
    rest.split_whitespace().next().unwrap_or("").to_string()
}

/// The guest's `wallclock: DATE base_ns=N` line: (DATE, N).
fn guest_reading(o: &Outcome) -> (String, u64) {
    let l = o.expect_line("wallclock: ");
    let rest = l.split("wallclock: ").nth(1).unwrap_or("");
    let mut w = rest.split_whitespace();
    let date = w.next().unwrap_or("").to_string();
    let base = w
        .next()
        .and_then(|b| b.strip_prefix("base_ns="))
        .and_then(|b| b.parse().ok())
        .unwrap_or_else(|| panic!("{}: no base_ns in `{l}`", o.test));
    (date, base)
}

#[test]
fn wallclock_qemu_rtc() {
    let test = "wallclock_qemu_rtc";
    let module = guest("wallclock");
    let mut vm = pvh_vm(1, "128M", TEST_CMDLINE, Some(&module));
    for a in [
        "-rtc",
        "base=2020-01-02T03:04:05,clock=vm",
        "-icount",
        "shift=0,align=off,sleep=off",
    ] {
        vm.extra.push(a.into());
    }
    let o = run(test, vm, PVH_TIMEOUT_S);
    let _report = ReportOnPanic(&o);
    o.assert_qemu_success("pvh");
    assert_eq!(hypervisor_date(&o), "2020-01-02T03:04:05Z", "{test}");
    let (date, base) = guest_reading(&o);
    assert_eq!(date, "2020-01-02T03:04:05Z", "{test}: the guest's date");
    // The base is the RTC's second minus the system time at which the
    // hypervisor read it (under a second into the boot).
    let base_s = base / 1_000_000_000;
    assert!(
        base_s == QEMU_RTC_UNIX_S || base_s + 1 == QEMU_RTC_UNIX_S,
        "{test}: base {base} ns is not just before {QEMU_RTC_UNIX_S} s"
    );
    o.assert_domain("module0", "exited", 0);
}

#[test]
fn wallclock_bochs_rtc() {
    let test = "wallclock_bochs_rtc";
    let iso = shared_iso(
        "wallclock-bochs.iso",
        "exit=bochs shutdown loglevel=info",
        &[guest_module("wallclock", "wallclock", "sleep_ms=50")],
    );
    let o = bochs::run_iso(
        test,
        &Pc::new("corei7_haswell_4770", 1, 128),
        &iso,
        None,
        bochs::TIMEOUT_S,
    );
    let _report = ReportOnPanic(&o);
    o.expect_line("Kestrel ready");
    let hv = hypervisor_date(&o);
    let (date, _) = guest_reading(&o);
    let (hv_s, guest_s) = (unix_of(&hv), unix_of(&date));
    // xtask::bochs sets time0 = 1577836800 (2020-01-01T00:00:00Z); Bochs
    // shows it in the host's time zone (-12 h ..= +14 h).
    let time0 = 1_577_836_800u64;
    assert!(
        (time0 - 12 * 3600..=time0 + 14 * 3600 + 600).contains(&hv_s),
        "{test}: the hypervisor's RTC date {hv} is not the day Bochs was given"
    );
    assert!(
        (hv_s..hv_s + 60).contains(&guest_s),
        "{test}: the guest's date {date} is not the hypervisor's {hv} (or just after)"
    );
    o.expect_line("wallclock: after sleep_ms=50: ");
    o.assert_domain("wallclock", "exited", 0);
}

/// ISO 8601 (`YYYY-MM-DDTHH:MM:SSZ`) to Unix seconds, for the checks.
mod pvabi_dates {
    pub fn unix_of(iso: &str) -> u64 {
        let n = |r: core::ops::Range<usize>| -> u32 {
            iso.get(r)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("`{iso}` is not YYYY-MM-DDTHH:MM:SSZ"))
        };
        let t = pvabi::UtcTime {
            year: n(0..4),
            month: n(5..7) as u8,
            day: n(8..10) as u8,
            hour: n(11..13) as u8,
            minute: n(14..16) as u8,
            second: n(17..19) as u8,
            nanos: 0,
        };
        t.to_unix_s()
            .unwrap_or_else(|| panic!("`{iso}` is not a valid date"))
    }
}
