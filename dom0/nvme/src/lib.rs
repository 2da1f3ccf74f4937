//! The pure part of dom0's NVMe driver (`dom0/src/dev/nvme/`), apart from
//! hardware so it is tested on the host: register fields, submission
//! queue entries, PRP lists, completion queue entries, the queues' tail,
//! head and phase bookkeeping, and the Identify data the driver reads.
//!
//! Why a driver of our own: the one no_std NVMe crate on crates.io
//! (`nvme-driver`) is built around interrupt-driven queues and its own
//! DMA/MMIO frameworks, with no polled mode; dom0 gets no device
//! interrupts yet, and needs only one I/O queue pair with one command in
//! flight. Facts cite the NVM Express Base Specification 1.4 (the version
//! QEMU's controller reports); sections are given as "NVMe 1.4 x.y".
#![no_std]
#![forbid(unsafe_code)]

pub mod cmd;
pub mod identify;
pub mod queue;
pub mod regs;
