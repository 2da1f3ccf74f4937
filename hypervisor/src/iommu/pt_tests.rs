#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use super::*;

#[derive(Default)]
struct Mem {
    next: u64,
    tables: HashMap<u64, [u64; 512]>,
}

impl TableMemory for Mem {
    fn alloc_table(&mut self) -> Option<u64> {
        self.next += 0x1000;
        let t = 0x100_0000 + self.next;
        self.tables.insert(t, [0; 512]);
        Some(t)
    }
    fn read_entry(&self, table: u64, index: usize) -> u64 {
        self.tables[&table][index]
    }
    fn write_entry(&mut self, table: u64, index: usize, value: u64) {
        self.tables.get_mut(&table).expect("live table")[index] = value;
    }
    fn free_table(&mut self, table: u64) {
        assert!(self.tables.remove(&table).is_some(), "double free");
    }
}

#[test]
fn vtd_three_level_map_translate_unmap() {
    let mut m = Mem::default();
    let mut pt = IoPageTable::new(Format::VtdSecondLevel, 3, &mut m).unwrap();
    assert_eq!(pt.limit(), 1 << 39);
    pt.map(0x4_0000, 0x7_7000, true, &mut m).unwrap();
    pt.map(0x4_1000, 0x9_9000, false, &mut m).unwrap();
    assert_eq!(pt.tables(), 3);
    assert_eq!(pt.translate(0x4_0123, &m), Some((0x7_7123, true)));
    assert_eq!(pt.translate(0x4_1008, &m), Some((0x9_9008, false)));
    assert_eq!(pt.translate(0x4_2000, &m), None);
    // The root's entry: table address | R | W, as the unit ANDs levels.
    let e = m.read_entry(pt.root(), 0);
    assert_eq!(e & 3, 3);
    assert_eq!(
        pt.map(0x4_0000, 0x1000, true, &mut m),
        Err(PtError::AlreadyMapped(0x4_0000))
    );
    assert_eq!(pt.unmap(0x4_0000, &mut m), Some(0x7_7000));
    assert_eq!(pt.translate(0x4_0000, &m), None);
    assert_eq!(pt.unmap(0x4_0000, &mut m), None);
    assert_eq!(
        pt.map(1 << 39, 0x1000, true, &mut m),
        Err(PtError::BadAddress(1 << 39))
    );
    assert_eq!(
        pt.map(0x10, 0x1000, true, &mut m),
        Err(PtError::BadAddress(0x10))
    );
    assert_eq!(pt.destroy(&mut m), 3);
    assert!(m.tables.is_empty(), "every table frame freed");
}

#[test]
fn amdvi_entries_carry_next_level() {
    let mut m = Mem::default();
    let mut pt = IoPageTable::new(Format::AmdVi, 4, &mut m).unwrap();
    let dva = (1 << 39) + (3 << 30) + (5 << 21) + (7 << 12);
    pt.map(dva, 0xabc_d000, true, &mut m).unwrap();
    // Walk by hand as the unit does, following NextLevel.
    let mut t = pt.root();
    for (level, shift) in [(4u64, 39), (3, 30), (2, 21)] {
        let e = m.read_entry(t, ((dva >> shift) & 511) as usize);
        assert_eq!((e >> 9) & 7, level - 1, "NextLevel at level {level}");
        assert_eq!(e & (1 | 1 << 61 | 1 << 62), 1 | 1 << 61 | 1 << 62);
        t = e & ADDR_MASK;
    }
    let leaf = m.read_entry(t, 7);
    assert_eq!((leaf >> 9) & 7, 0, "a leaf's NextLevel is 0");
    assert_eq!(leaf & ADDR_MASK, 0xabc_d000);
    assert_eq!(pt.translate(dva + 4, &m), Some((0xabc_d004, true)));
    pt.map(dva + 0x1000, 0x1000, false, &mut m).unwrap();
    let ro = m.read_entry(t, 8);
    assert_eq!(ro & (1 << 62), 0, "read-only: IW clear");
    // Empty entries are not present but never zero (see `Format::empty`).
    assert_eq!(m.read_entry(t, 9), 1 << 9);
    assert_eq!(m.read_entry(pt.root(), 0), 1 << 9);
    assert_eq!(pt.unmap(dva, &mut m), Some(0xabc_d000));
    assert_eq!(m.read_entry(t, 7), 1 << 9);
    assert_eq!(pt.translate(dva, &m), None);
    assert_eq!(pt.destroy(&mut m), 4);
}

#[test]
fn bad_levels_refused() {
    let mut m = Mem::default();
    assert!(IoPageTable::new(Format::AmdVi, 2, &mut m).is_err());
    assert!(IoPageTable::new(Format::AmdVi, 5, &mut m).is_err());
}
