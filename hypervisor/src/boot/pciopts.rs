//! The PCI options of the hypervisor's command line: `iommu=` and
//! `pci-hide=` (`docs/pci.md`). Pure; parsed by `cmdline.rs`, applied by
//! `pci/assign.rs`.
#![forbid(unsafe_code)]

/// `iommu=`: whether a device may be assigned without DMA isolation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IommuMode {
    /// `iommu=on` (the default): a device is assigned only where an IOMMU
    /// unit fences its DMA to its owner's memory.
    #[default]
    On,
    /// `iommu=off-unsafe`: devices are assigned with no fence; an
    /// assigned device can read and write all memory. A warning says so
    /// at boot.
    OffUnsafe,
}

/// Accepted `iommu=` values, for the error message.
pub const IOMMU_VALUES: &str = "on or off-unsafe";

impl IommuMode {
    /// Parses an `iommu=` value.
    pub fn parse(v: &str) -> Option<Self> {
        if v.eq_ignore_ascii_case("on") {
            Some(Self::On)
        } else if v.eq_ignore_ascii_case("off-unsafe") {
            Some(Self::OffUnsafe)
        } else {
            None
        }
    }
}

/// Most items one `pci-hide=` takes.
pub const MAX_HIDE: usize = 8;

/// One `pci-hide=` item: a bus, a device (all its functions) or one
/// function of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HideItem {
    /// Segment.
    pub seg: u16,
    /// Bus.
    pub bus: u8,
    /// Device, or every device on the bus.
    pub dev: Option<u8>,
    /// Function, or every function of the device.
    pub func: Option<u8>,
}

/// `pci-hide=`: devices the hypervisor keeps (never assigned), e.g. a
/// PCI serial card it logs to, or a device an operator wants left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PciHide {
    items: [HideItem; MAX_HIDE],
    len: u8,
}

/// The accepted form, for the error message.
pub const HIDE_FORMAT: &str = "a comma-separated list of up to 8 of SSSS:BB, SSSS:BB:DD or \
                               SSSS:BB:DD.F (hexadecimal; device <= 1f, function <= 7)";

fn hex<T: TryFrom<u32>>(s: &str, digits: usize, max: u32) -> Option<T> {
    if s.is_empty() || s.len() > digits {
        return None;
    }
    let v = u32::from_str_radix(s, 16).ok()?;
    if v > max {
        return None;
    }
    T::try_from(v).ok()
}

impl PciHide {
    /// Parses a `pci-hide=` value; on error, the item that is wrong.
    pub fn parse(v: &str) -> Result<Self, &str> {
        let mut out = Self::default();
        for item in v.split(',') {
            let slot = out.items.get_mut(usize::from(out.len)).ok_or(item)?;
            let mut parts = item.split(':');
            let seg = parts.next().and_then(|s| hex(s, 4, 0xffff)).ok_or(item)?;
            let bus = parts.next().and_then(|s| hex(s, 2, 0xff)).ok_or(item)?;
            let (dev, func) = match parts.next() {
                None => (None, None),
                Some(df) => match df.split_once('.') {
                    None => (Some(hex(df, 2, 0x1f).ok_or(item)?), None),
                    Some((d, f)) => (
                        Some(hex(d, 2, 0x1f).ok_or(item)?),
                        Some(hex(f, 1, 7).ok_or(item)?),
                    ),
                },
            };
            if parts.next().is_some() {
                return Err(item);
            }
            *slot = HideItem {
                seg,
                bus,
                dev,
                func,
            };
            out.len += 1;
        }
        Ok(out)
    }

    /// The items given.
    pub fn items(&self) -> &[HideItem] {
        &self.items[..usize::from(self.len)]
    }

    /// Whether the function at (`seg`, `bus`, `dev`, `func`) is hidden.
    pub fn hides(&self, seg: u16, bus: u8, dev: u8, func: u8) -> bool {
        self.items().iter().any(|i| {
            i.seg == seg
                && i.bus == bus
                && i.dev.is_none_or(|d| d == dev)
                && i.func.is_none_or(|f| f == func)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn iommu_values() {
        assert_eq!(IommuMode::parse("on"), Some(IommuMode::On));
        assert_eq!(IommuMode::parse("OFF-UNSAFE"), Some(IommuMode::OffUnsafe));
        assert_eq!(IommuMode::parse("off"), None);
        assert_eq!(IommuMode::default(), IommuMode::On);
    }

    #[test]
    fn hide_forms() {
        let h = PciHide::parse("0000:00:03.0,0001:02,0000:00:1f").unwrap();
        assert_eq!(h.items().len(), 3);
        assert!(h.hides(0, 0, 3, 0));
        assert!(!h.hides(0, 0, 3, 1));
        assert!(h.hides(1, 2, 7, 5));
        assert!(!h.hides(0, 2, 7, 5));
        assert!(h.hides(0, 0, 0x1f, 3));
        assert!(!h.hides(0, 0, 4, 0));
    }

    #[test]
    fn hide_rejects_bad_items() {
        for (v, bad) in [
            ("0000:00:20.0", "0000:00:20.0"),
            ("0000:00:03.8", "0000:00:03.8"),
            ("00:03.0", "00:03.0"),
            ("0000:100", "0000:100"),
            ("0000:00:03.0:1", "0000:00:03.0:1"),
            ("0000:00,,0000:01", ""),
            ("0000:0g", "0000:0g"),
            ("00000:00", "00000:00"),
        ] {
            assert_eq!(PciHide::parse(v), Err(bad), "{v}");
        }
        let nine = "0000:00,".repeat(8) + "0000:09";
        assert_eq!(PciHide::parse(&nine), Err("0000:09"));
        assert_eq!(
            PciHide::parse("0000:00,".repeat(7).trim_end_matches(','))
                .unwrap()
                .items()
                .len(),
            7
        );
    }
}
