//! Host tests of the virq, ipi, status, bind-vcpu and control-area
//! event-channel hypercalls (numbers 25-29):
//! decoding with hostile register values, and virq/ipi/status/bind-vcpu
//! through the handler against a real table.

use super::super::*;
use super::fake_op;
use crate::domain::ids::DomainId;
use crate::evtchn::EventTable;
use pvabi::{
    EVTCHN_STATE_IPI, EVTCHN_STATE_VIRQ, HC_EVTCHN_BIND_IPI, HC_EVTCHN_BIND_VCPU,
    HC_EVTCHN_BIND_VIRQ, HC_EVTCHN_INIT_CONTROL, HC_EVTCHN_SEND, HC_EVTCHN_STATUS, VIRQ_TIMER,
};

fn dec(nr: u64, a0: u64, a1: u64) -> Option<Result<EvtchnOp, i64>> {
    EvtchnOp::decode(nr, [a0, a1, u64::MAX, u64::MAX, u64::MAX, u64::MAX])
        .map(|r| r.map_err(pvabi::Error::code))
}

#[test]
fn decoding_the_1_3_numbers() {
    assert_eq!(
        dec(HC_EVTCHN_BIND_VIRQ, 2, 3),
        Some(Ok(EvtchnOp::BindVirq { virq: 2, vcpu: 3 }))
    );
    assert_eq!(
        dec(HC_EVTCHN_BIND_IPI, 3, u64::MAX),
        Some(Ok(EvtchnOp::BindIpi { vcpu: 3 }))
    );
    assert_eq!(
        dec(HC_EVTCHN_STATUS, 4, u64::MAX),
        Some(Ok(EvtchnOp::Status {
            port: 4,
            gpa: u64::MAX
        })),
        "the address is checked when the status is written"
    );
    assert_eq!(
        dec(HC_EVTCHN_BIND_VCPU, 4, 1),
        Some(Ok(EvtchnOp::BindVcpu { port: 4, vcpu: 1 }))
    );
    assert_eq!(
        dec(HC_EVTCHN_INIT_CONTROL, 0x5000, 0xf0),
        Some(Ok(EvtchnOp::InitControl {
            gpa: 0x5000,
            vector: 0xf0
        }))
    );
    assert_eq!(dec(30, 0, 0), None, "30 is not an evtchn op");
}

#[test]
fn hostile_1_3_arguments_are_einval() {
    for bad in [1 << 32, u64::MAX, 0x1_0000_0001] {
        assert_eq!(dec(HC_EVTCHN_BIND_VIRQ, bad, 0), Some(Err(EINVAL)));
        assert_eq!(dec(HC_EVTCHN_BIND_VIRQ, 0, bad), Some(Err(EINVAL)));
        assert_eq!(dec(HC_EVTCHN_BIND_IPI, bad, 0), Some(Err(EINVAL)));
        assert_eq!(dec(HC_EVTCHN_STATUS, bad, 0x1000), Some(Err(EINVAL)));
        assert_eq!(dec(HC_EVTCHN_BIND_VCPU, bad, 0), Some(Err(EINVAL)));
        assert_eq!(dec(HC_EVTCHN_BIND_VCPU, 1, bad), Some(Err(EINVAL)));
        assert_eq!(dec(HC_EVTCHN_INIT_CONTROL, 0x1000, bad), Some(Err(EINVAL)));
    }
    // Vectors: 0..32 are exceptions, 256 and up do not exist; the vector
    // is checked before the alignment.
    for v in [0, 1, 2, 14, 31, 256, 0x1_0000_0020] {
        assert_eq!(dec(HC_EVTCHN_INIT_CONTROL, 0x1000, v), Some(Err(EINVAL)));
        assert_eq!(dec(HC_EVTCHN_INIT_CONTROL, 0x1001, v), Some(Err(EINVAL)));
    }
    for v in [32, 255] {
        assert!(matches!(
            dec(HC_EVTCHN_INIT_CONTROL, 0x1000, v),
            Some(Ok(_))
        ));
    }
    for gpa in [1, 0xfff, 0x1008, u64::MAX] {
        assert_eq!(dec(HC_EVTCHN_INIT_CONTROL, gpa, 0x40), Some(Err(EINVAL)));
    }
}

#[test]
fn virq_ipi_status_and_bind_vcpu_through_the_handler() {
    let mut t = EventTable::new(DomainId(1), 2);
    let mut run = |nr, a: u64, b: u64| {
        fake_op(&mut t, EvtchnOp::decode(nr, [a, b, 0, 0, 0, 0]).unwrap()?)
            .map_err(pvabi::Error::code)
    };
    let v = run(HC_EVTCHN_BIND_VIRQ, u64::from(VIRQ_TIMER), 1).unwrap();
    assert_eq!(
        run(HC_EVTCHN_BIND_VIRQ, u64::from(VIRQ_TIMER), 1),
        Err(EEXIST)
    );
    assert_eq!(run(HC_EVTCHN_BIND_VIRQ, 16, 0), Err(EINVAL));
    assert_eq!(run(HC_EVTCHN_BIND_VIRQ, 0, 2), Err(EINVAL));
    let i = run(HC_EVTCHN_BIND_IPI, 1, 0).unwrap();
    assert_eq!(run(HC_EVTCHN_BIND_IPI, 2, 0), Err(EINVAL));
    assert_eq!(
        run(HC_EVTCHN_STATUS, v, 0),
        Ok(u64::from(EVTCHN_STATE_VIRQ))
    );
    assert_eq!(run(HC_EVTCHN_STATUS, i, 0), Ok(u64::from(EVTCHN_STATE_IPI)));
    assert_eq!(run(HC_EVTCHN_STATUS, 0, 0), Err(ENOENT));
    assert_eq!(run(HC_EVTCHN_STATUS, 77, 0), Err(ENOENT));
    assert_eq!(
        run(HC_EVTCHN_SEND, v, 0),
        Err(EINVAL),
        "virq ports are not sent on"
    );
    assert_eq!(run(HC_EVTCHN_SEND, i, 0), Ok(0));
    assert_eq!(
        run(HC_EVTCHN_BIND_VCPU, i, 0),
        Err(EINVAL),
        "ipi keeps its vCPU"
    );
    assert_eq!(run(HC_EVTCHN_BIND_VCPU, 99, 0), Err(ENOENT));
}
