//! Grant op sequences over two domains' grant tables and map tracks: each
//! domain grants pages to the other, maps the other's grants, unmaps,
//! revokes (deferred while mapped), copies, raises limits, and dies.
//!
//! Input: a sequence of ops, each an op byte, a domain byte and two `u32`
//! operands (folded into a small range half the time, as in `evtchn`).
//!
//! Checked after every op: no panic; every active grant's map count equals
//! the mappings of it in its grantee's map track; no table or track uses
//! more entries than its limit; a grant being revoked is never handed out.

use crate::hv::{Access, DomainId, GrantTable, MapTrack};
use crate::input::Input;

/// The two domains.
pub const DOMS: [DomainId; 2] = [DomainId(1), DomainId(2)];
/// Grant references the ops name (when folded) and the check looks at.
const SCAN: u32 = 48;
/// Most ops one input runs: each maps at most once, so map handles stay
/// below this and the check sees every mapping.
pub const MAX_OPS: usize = 256;

fn fold(v: u32, range: u32) -> u32 {
    if v & 0x8000_0000 == 0 { v % range } else { v }
}

fn access(v: u32) -> Access {
    if v & 0x100 == 0 {
        Access::ReadOnly
    } else {
        Access::ReadWrite
    }
}

struct World {
    tables: [GrantTable; 2],
    tracks: [MapTrack; 2],
}

impl World {
    fn step(&mut self, me: usize, op: u8, a: u32, b: u32) {
        let other = 1 - me;
        let gref = fold(a, SCAN);
        match op % 10 {
            0 => {
                let grantee = if b & 1 == 0 { DOMS[other] } else { DOMS[me] };
                let gpa = u64::from(fold(b >> 1, 64)) * 0x1000 + u64::from(b & 0x200 != 0);
                let _ = self.tables[me].grant(grantee, gpa, access(b));
            }
            1 => {
                // `me` maps the other domain's grant `gref`.
                let at = u64::from(fold(b, 64)) * 0x1000;
                let _ = self.tables[other].map(&mut self.tracks[me], DOMS[me], gref, access(b), at);
            }
            2 => {
                // Unmap handle `a` of `me`'s track, through the granter's
                // table or (b odd) the wrong one.
                let handle = fold(a, SCAN);
                let granter = match self.tracks[me].get(handle) {
                    Ok(m) => m.granter,
                    Err(_) => DOMS[other],
                };
                let g = usize::from(granter == DOMS[1]) ^ (b & 1) as usize;
                let _ = self.tables[g].unmap(&mut self.tracks[me], handle);
            }
            3 => {
                let _ = self.tables[me].revoke(gref, b);
            }
            4 => {
                let _ = self.tables[me].status(gref);
                let _ = self.tables[me].check(DOMS[other], gref, access(b));
            }
            5 => {
                let _ =
                    self.tables[other].check_copy(DOMS[me], gref, b & 0x1fff, a >> 16, b & 1 == 0);
            }
            6 => {
                let _ = self.tables[me].set_max(fold(b, SCAN));
            }
            7 => {
                let _ = self.tracks[me].set_max(fold(b, SCAN));
            }
            8 => {
                // `me` dies as a grantee: its mappings go, each granter
                // drops the map (finishing deferred revokes).
                for m in self.tracks[me].take_all() {
                    let g = usize::from(m.granter == DOMS[1]);
                    let _ = self.tables[g].drop_map(m.gref);
                }
            }
            _ => {
                // `me` dies as a granter: revoke everything, the grantee
                // drops its mappings of `me`'s pages.
                let _ = self.tables[me].revoke_all();
                for m in self.tracks[other].take_granter(DOMS[me]) {
                    let _ = self.tables[me].drop_map(m.gref);
                }
                for m in self.tracks[me].take_granter(DOMS[me]) {
                    let _ = self.tables[me].drop_map(m.gref);
                }
            }
        }
    }

    fn check(&self) {
        for (i, t) in self.tables.iter().enumerate() {
            let l = t.limits();
            assert!(l.in_use <= l.max, "dom{} grants {l:?}", DOMS[i].0);
            let tl = self.tracks[i].limits();
            assert!(tl.in_use <= tl.max, "dom{} maps {tl:?}", DOMS[i].0);
            // Mappings of each of `i`'s grants, from both tracks.
            let mut maps = [[0u32; SCAN as usize]; 2];
            for (j, track) in self.tracks.iter().enumerate() {
                for h in 0..MAX_OPS as u32 {
                    if let Ok(m) = track.get(h)
                        && m.granter == DOMS[i]
                        && m.gref < SCAN
                    {
                        maps[j][m.gref as usize] += 1;
                    }
                }
            }
            for gref in 0..SCAN {
                let Ok(st) = t.status(gref) else {
                    assert_eq!(
                        maps.map(|m| m[gref as usize]),
                        [0, 0],
                        "mapped free gref {gref}"
                    );
                    continue;
                };
                let Some(j) = DOMS.iter().position(|d| *d == st.grantee) else {
                    panic!("grant to an unknown domain {st:?}");
                };
                assert_eq!(
                    st.maps, maps[j][gref as usize],
                    "dom{} gref {gref}: {st:?}",
                    DOMS[i].0
                );
                assert_eq!(maps[1 - j][gref as usize], 0, "mapped by a non-grantee");
                if st.revoking {
                    assert!(t.check(st.grantee, gref, Access::ReadOnly).is_err());
                }
            }
        }
    }
}

/// The target.
pub fn run(data: &[u8]) {
    let mut w = World {
        tables: DOMS.map(GrantTable::new),
        tracks: [MapTrack::new(), MapTrack::new()],
    };
    let mut inp = Input::new(data);
    for _ in 0..MAX_OPS {
        if inp.is_empty() {
            break;
        }
        let op = inp.u8();
        let me = usize::from(inp.u8() & 1);
        let (a, b) = (inp.u32(), inp.u32());
        w.step(me, op, a, b);
        w.check();
    }
}
