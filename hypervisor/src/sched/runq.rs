//! One CPU's run queue: the vCPUs waiting there, and the one it runs.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use super::VcpuId;

/// Per-CPU state. A runnable vCPU is in exactly one `RunQueue`: waiting in
/// its `queue` or as its `current`; a blocked vCPU is in none.
#[derive(Debug, Default)]
pub struct RunQueue {
    /// Waiting vCPUs, oldest first (FIFO within a priority).
    pub(super) queue: VecDeque<VcpuId>,
    /// The vCPU this CPU runs now.
    pub(super) current: Option<VcpuId>,
    /// When `current`'s slice ends.
    pub(super) slice_end: u64,
    /// vCPUs (record indices) that joined the active list while queued or
    /// started here since the last accounting, which moves them to the
    /// list: a wake-up or a pick touches only its CPU's queue, not the
    /// shared list (issue 11's per-CPU split).
    pub(super) joined: Vec<u32>,
    /// Domains (record indices) that used their cap in a deschedule here
    /// since the last accounting, which moves them to the parked list (as
    /// [`Self::joined`]: a deschedule touches only its CPU's queue).
    pub(super) parks: Vec<u32>,
    /// CPU time charged to vCPUs that ran here since the last accounting,
    /// which hands out no more credit than that (so credit is conserved:
    /// time no vCPU was charged for, the hypervisor's own between two
    /// guests or an idle CPU's, is granted to nobody).
    pub(super) burnt: u64,
    /// Entries of this queue examined so far (part of
    /// [`super::Credit::steps`]): counted with the queue, under the lock
    /// that guards it, so that no two CPUs write one count.
    pub(super) steps: u64,
}

impl RunQueue {
    /// The vCPU running here.
    pub fn current(&self) -> Option<VcpuId> {
        self.current
    }

    /// How many vCPUs wait here (parked ones included).
    pub fn waiting(&self) -> usize {
        self.queue.len()
    }

    /// Running plus waiting vCPUs: the load placement compares.
    pub(super) fn load(&self) -> usize {
        self.queue.len() + usize::from(self.current.is_some())
    }

    /// Takes `id` out of the queue; whether it was there.
    pub(super) fn remove(&mut self, id: VcpuId) -> bool {
        match self.queue.iter().position(|&q| q == id) {
            Some(pos) => self.queue.remove(pos).is_some(),
            None => false,
        }
    }
}
