//! smoltcp's `Device` over virtio-drivers' `VirtIONetRaw` (virtio-drivers
//! without its `alloc` feature, which would turn on zerocopy's `alloc` for
//! the guests built alongside dom0): dom0 keeps the receive buffers.
//! The receive queue interrupts (`mod.rs` binds it); sending waits for
//! the device to take each frame.
#![allow(unsafe_code)]

use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use crate::dev::virtio::Platform;
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::time::Instant;
use virtio_drivers::device::net::VirtIONetRaw;

use crate::dev::DomHal;

/// Descriptors per queue (a power of two, virtio 1.2, 2.7).
pub const QUEUE: usize = 16;
/// Receive buffer size: the virtio-net header (12 bytes, virtio 1.2,
/// 5.1.6) and an Ethernet frame (1514), rounded up.
const RX_BUF: usize = 2048;
/// Largest frame sent: Ethernet header + 1500 bytes of IP.
const MTU: usize = 1514;

pub type Raw = VirtIONetRaw<DomHal, Platform, QUEUE>;

/// The device and the receive buffers it holds, by token (the first
/// descriptor of each chain, < QUEUE).
pub struct Inner {
    raw: Raw,
    rx: Vec<Option<Vec<u8>>>,
}

impl Inner {
    /// Gives `buf` to the device to receive into.
    fn post(&mut self, mut buf: Vec<u8>) {
        // SAFETY: `buf`'s heap storage is kept in `self.rx` (moving the
        // Vec does not move its storage) and not touched until the device
        // returns the token through `poll_receive`, when `take` completes
        // it with the same buffer.
        match unsafe { self.raw.receive_begin(&mut buf) } {
            Ok(t) => {
                if let Some(slot) = self.rx.get_mut(usize::from(t)) {
                    *slot = Some(buf);
                }
            }
            Err(e) => crate::say(&alloc::format!("net: receive buffer not posted: {e}")),
        }
    }

    /// The next received frame's buffer and where the frame is in it.
    fn take(&mut self) -> Option<(Vec<u8>, usize, usize)> {
        let t = self.raw.poll_receive()?;
        let mut buf = self.rx.get_mut(usize::from(t))?.take()?;
        // SAFETY: `buf` is the buffer posted with token `t` (stored at
        // `rx[t]` by `post`).
        match unsafe { self.raw.receive_complete(t, &mut buf) } {
            Ok((hdr, len)) => Some((buf, hdr, len)),
            Err(_) => {
                self.post(buf);
                None
            }
        }
    }
}

/// The NIC, shared by the receive and transmit tokens smoltcp holds at once.
pub struct Nic {
    inner: RefCell<Inner>,
}

impl Nic {
    /// Takes the device and posts a receive buffer in every descriptor.
    pub fn new(raw: Raw) -> Self {
        let mut inner = Inner {
            raw,
            rx: (0..QUEUE).map(|_| None).collect(),
        };
        for _ in 0..QUEUE {
            inner.post(vec![0u8; RX_BUF]);
        }
        Self {
            inner: RefCell::new(inner),
        }
    }

    /// Whether the device has returned a frame not yet taken.
    pub fn rx_pending(&self) -> bool {
        self.inner.borrow().raw.poll_receive().is_some()
    }

    pub fn mac(&self) -> [u8; 6] {
        self.inner.borrow().raw.mac_address()
    }
}

pub struct Rx<'a> {
    nic: &'a RefCell<Inner>,
    buf: Option<(Vec<u8>, usize, usize)>,
}

impl RxToken for Rx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(mut self, f: F) -> R {
        let got = self.buf.take();
        let frame = got
            .as_ref()
            .and_then(|(b, hdr, len)| b.get(*hdr..hdr.checked_add(*len)?));
        let r = f(frame.unwrap_or_default());
        if let Some((b, _, _)) = got {
            self.nic.borrow_mut().post(b);
        }
        r
    }
}

impl Drop for Rx<'_> {
    /// A token smoltcp dropped unused still gives its buffer back to the
    /// device, or the receive queue would shrink.
    fn drop(&mut self) {
        if let Some((b, _, _)) = self.buf.take() {
            self.nic.borrow_mut().post(b);
        }
    }
}

pub struct Tx<'a> {
    nic: &'a RefCell<Inner>,
}

impl TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; len];
        let r = f(&mut frame);
        // Waits for the device to take the frame (QEMU completes it at
        // once); a failure drops the frame, which TCP retransmits.
        let _ = self.nic.borrow_mut().raw.send(&frame);
        r
    }
}

impl Device for Nic {
    type RxToken<'a> = Rx<'a>;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(Rx<'_>, Tx<'_>)> {
        let buf = {
            let mut inner = self.inner.borrow_mut();
            if !inner.raw.can_send() {
                return None;
            }
            inner.take()?
        };
        Some((
            Rx {
                nic: &self.inner,
                buf: Some(buf),
            },
            Tx { nic: &self.inner },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<Tx<'_>> {
        self.inner
            .borrow()
            .raw
            .can_send()
            .then_some(Tx { nic: &self.inner })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MTU;
        caps.max_burst_size = Some(1);
        caps
    }
}
