//! `mem_set` (`hvctl mem-set`, as `xl mem-set`): a live domain's memory
//! target. dom0 checks what it can name in the error (the page size, the
//! 4 MiB floor, the domain's maximum) before the hypervisor, which checks
//! the same again (`HC_DOMCTL_MEM_TARGET`), records the target and raises
//! `VIRQ_MEM_TARGET` in the domain. A cooperating guest balloons toward it
//! (`pvabi::guest::memtarget`); nothing is forced, so `info` shows the
//! target beside the memory the domain holds. This is the mechanism; a
//! balloon policy (dom0 moving memory between domains) will drive it.

use alloc::format;
use alloc::string::String;

use super::{ErrorCode, Hypervisor, ProtoError, Reply, err, hv_err, managed};
use crate::proto::DomainRef;

const PAGE: u64 = pvabi::PAGE_SIZE;
const MIB: u64 = 1 << 20;

/// `n` bytes as an operator reads them: whole MiB as `N MiB`, else KiB
/// (targets are whole pages, so whole KiB).
pub fn size(n: u64) -> String {
    if n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n.is_multiple_of(1024) {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} bytes")
    }
}

/// Sets the target of domain `r` to `target_bytes`; the domain as it is
/// now (with the new target).
pub(super) fn mem_set(
    hv: &mut impl Hypervisor,
    r: &DomainRef,
    target_bytes: u64,
) -> Result<Reply, ProtoError> {
    // dom0 runs no balloon and has no target; a dying domain none either.
    let d = managed(hv, r)?;
    let asked = size(target_bytes);
    if !target_bytes.is_multiple_of(PAGE) {
        return Err(err(
            ErrorCode::BadRequest,
            format!("mem-set: {asked} asked, not a whole number of 4 KiB pages"),
        ));
    }
    let floor = pvabi::MEM_TARGET_MIN_PAGES * PAGE;
    if target_bytes < floor {
        return Err(err(
            ErrorCode::BadRequest,
            format!(
                "mem-set: {asked} asked, the smallest target is {}",
                size(floor)
            ),
        ));
    }
    if target_bytes > d.memory_bytes {
        return Err(err(
            ErrorCode::BadRequest,
            format!(
                "mem-set: {asked} asked, the domain's maximum is {}",
                size(d.memory_bytes)
            ),
        ));
    }
    hv.set_mem_target(d.id, target_bytes / PAGE)
        .map_err(|e| match e {
            pvabi::Error::NoSys => err(
                ErrorCode::Internal,
                "mem-set: the hypervisor has no memory targets (pvabi older than this dom0)",
            ),
            e => hv_err(e),
        })?;
    Ok(Reply::Domain {
        domain: hv.info(d.id).map_err(hv_err)?.to_proto(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::super::tests::{Fake, HELLO, create_line};
    use super::super::*;
    use crate::proto::{Outcome, Response, ServerLine, decode_server_line};

    fn reply(s: &mut Server, hv: &mut Fake, line: &str) -> Outcome {
        match decode_server_line(s.handle_line(hv, Ok(line.as_bytes().to_vec())).as_bytes()) {
            Ok(ServerLine::Response(Response { result, .. })) => result,
            other => panic!("{other:?}"),
        }
    }

    fn setup() -> (Server, Fake) {
        let mut hv = Fake::new(256);
        let mut s = Server::default();
        assert!(matches!(reply(&mut s, &mut hv, HELLO), Outcome::Ok(_)));
        let cfg = "[[domain]]\nname = \"b\"\nimage = \"ticker\"\nmemory = 32\n";
        assert!(matches!(
            reply(&mut s, &mut hv, &create_line(cfg)),
            Outcome::Ok(_)
        ));
        (s, hv)
    }

    fn refused(s: &mut Server, hv: &mut Fake, line: &str) -> String {
        match reply(s, hv, line) {
            Outcome::Error(e) => e.message,
            Outcome::Ok(r) => panic!("{line}: unexpected {r:?}"),
        }
    }

    #[test]
    fn mem_set_records_the_target_and_info_shows_it_beside_current() {
        let (mut s, mut hv) = setup();
        let line = r#"{"id":1,"op":"mem_set","domain":"b","target_bytes":16777216}"#;
        let Outcome::Ok(Reply::Domain { domain }) = reply(&mut s, &mut hv, line) else {
            panic!()
        };
        assert_eq!(domain.target_bytes, Some(16 << 20));
        // The fake guest does not balloon: it still holds all 32 MiB.
        assert_eq!(domain.current_bytes, Some(32 << 20));
        assert_eq!(domain.memory_bytes, 32 << 20);
        assert_eq!(hv.targets, [(2, 4096)]);
    }

    #[test]
    fn mem_set_refusals_name_the_numbers() {
        let (mut s, mut hv) = setup();
        let m = |bytes: u64, dom: &str| {
            format!(r#"{{"id":1,"op":"mem_set","domain":{dom},"target_bytes":{bytes}}}"#)
        };
        assert_eq!(
            refused(&mut s, &mut hv, &m(300 << 20, "\"b\"")),
            "mem-set: 300 MiB asked, the domain's maximum is 32 MiB"
        );
        assert_eq!(
            refused(&mut s, &mut hv, &m(2 << 20, "\"b\"")),
            "mem-set: 2 MiB asked, the smallest target is 4 MiB"
        );
        assert_eq!(
            refused(&mut s, &mut hv, &m((16 << 20) + 512, "\"b\"")),
            "mem-set: 16777728 bytes asked, not a whole number of 4 KiB pages"
        );
        assert_eq!(
            refused(&mut s, &mut hv, &m(16 << 20, "1")),
            "that is the control domain"
        );
        assert_eq!(
            refused(&mut s, &mut hv, &m(16 << 20, "\"nosuch\"")),
            "no domain \"nosuch\""
        );
        assert!(hv.targets.is_empty(), "nothing reached the hypervisor");
    }

    #[test]
    fn sizes_read_as_an_operator_writes_them() {
        assert_eq!(super::size(16 << 20), "16 MiB");
        assert_eq!(super::size(4100 * 1024), "4100 KiB");
        assert_eq!(super::size(5), "5 bytes");
    }
}
