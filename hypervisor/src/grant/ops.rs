//! Decoding the grant hypercalls (`HC_GRANT_*`): the guest's
//! registers become a typed [`GrantOp`] here. Domain ids, grant references,
//! ports, map handles and limits must fit in 32 bits and flags may only hold
//! [`GRANT_READONLY`] (copy: [`GRANT_COPY_TO_GRANT`]) (`EINVAL`); addresses,
//! lengths and offsets are checked against the domain's
//! memory by the services, and references against the grant tables
//! ([`crate::grant`]).

use pvabi::Error;
use pvabi::{
    GRANT_COPY_TO_GRANT, GRANT_READONLY, HC_GRANT_ACCESS, HC_GRANT_COPY, HC_GRANT_MAP,
    HC_GRANT_QUERY, HC_GRANT_REVOKE, HC_GRANT_SET_MAX, HC_GRANT_UNMAP,
};

use crate::domain::ids::DomainId;
use crate::grant::{Access, GrantRef, MapHandle};

/// One grant op with decoded arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantOp {
    /// Let `grantee` map the caller's page at `gpa`.
    Access {
        gpa: u64,
        grantee: DomainId,
        access: Access,
    },
    /// End grant `gref`; raise `port` (0: none) when a deferred revoke
    /// completes.
    Revoke { gref: GrantRef, port: u32 },
    /// Map `granter`'s grant `gref` at the caller's `at`.
    Map {
        granter: DomainId,
        gref: GrantRef,
        at: u64,
        access: Access,
    },
    /// Remove a mapping.
    Unmap(MapHandle),
    /// Copy `len` bytes between `offset` in `granter`'s grant `gref` and
    /// the caller's `local` (into the grant when `to_grant`). `offset` and
    /// `len` are checked by the service, in the documented order.
    Copy {
        granter: DomainId,
        gref: GrantRef,
        offset: u64,
        local: u64,
        len: u64,
        to_grant: bool,
    },
    /// Write the caller's limits to `gpa`.
    Query { gpa: u64 },
    /// Raise the caller's grant and map limits.
    SetMax { grants: u32, maps: u32 },
}

fn u32_arg(v: u64) -> Result<u32, Error> {
    u32::try_from(v).map_err(|_| Error::Invalid)
}

fn access(flags: u64) -> Result<Access, Error> {
    match flags {
        0 => Ok(Access::ReadWrite),
        GRANT_READONLY => Ok(Access::ReadOnly),
        _ => Err(Error::Invalid),
    }
}

impl GrantOp {
    /// The op for hypercall `nr` with arguments `a`; `None` when `nr` is
    /// not a grant hypercall.
    pub fn decode(nr: u64, a: [u64; 6]) -> Option<Result<Self, Error>> {
        let op = match nr {
            HC_GRANT_ACCESS => u32_arg(a[1]).and_then(|g| {
                Ok(Self::Access {
                    gpa: a[0],
                    grantee: DomainId(g),
                    access: access(a[2])?,
                })
            }),
            HC_GRANT_REVOKE => u32_arg(a[0]).and_then(|gref| {
                Ok(Self::Revoke {
                    gref,
                    port: u32_arg(a[1])?,
                })
            }),
            HC_GRANT_MAP => u32_arg(a[0]).and_then(|g| {
                Ok(Self::Map {
                    granter: DomainId(g),
                    gref: u32_arg(a[1])?,
                    at: a[2],
                    access: access(a[3])?,
                })
            }),
            HC_GRANT_UNMAP => u32_arg(a[0]).map(Self::Unmap),
            HC_GRANT_COPY => u32_arg(a[0]).and_then(|g| {
                let to_grant = match a[5] {
                    0 => false,
                    GRANT_COPY_TO_GRANT => true,
                    _ => return Err(Error::Invalid),
                };
                Ok(Self::Copy {
                    granter: DomainId(g),
                    gref: u32_arg(a[1])?,
                    offset: a[2],
                    local: a[3],
                    len: a[4],
                    to_grant,
                })
            }),
            HC_GRANT_QUERY => Ok(Self::Query { gpa: a[0] }),
            HC_GRANT_SET_MAX => u32_arg(a[0]).and_then(|grants| {
                Ok(Self::SetMax {
                    grants,
                    maps: u32_arg(a[1])?,
                })
            }),
            _ => return None,
        };
        Some(op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_refuses_wide_arguments() {
        let big = 1u64 << 32;
        assert_eq!(
            GrantOp::decode(HC_GRANT_ACCESS, [0x5000, 2, 1, 0, 0, 0]),
            Some(Ok(GrantOp::Access {
                gpa: 0x5000,
                grantee: DomainId(2),
                access: Access::ReadOnly
            }))
        );
        assert_eq!(
            GrantOp::decode(HC_GRANT_ACCESS, [0x5000, big, 0, 0, 0, 0]),
            Some(Err(Error::Invalid))
        );
        assert_eq!(
            GrantOp::decode(HC_GRANT_ACCESS, [0x5000, 2, 2, 0, 0, 0]),
            Some(Err(Error::Invalid))
        );
        assert_eq!(
            GrantOp::decode(HC_GRANT_REVOKE, [3, big, 0, 0, 0, 0]),
            Some(Err(Error::Invalid))
        );
        assert_eq!(
            GrantOp::decode(HC_GRANT_MAP, [1, 3, 0x7000, 0, 0, 0]),
            Some(Ok(GrantOp::Map {
                granter: DomainId(1),
                gref: 3,
                at: 0x7000,
                access: Access::ReadWrite
            }))
        );
        assert_eq!(
            GrantOp::decode(HC_GRANT_MAP, [1, big, 0x7000, 0, 0, 0]),
            Some(Err(Error::Invalid))
        );
        assert_eq!(
            GrantOp::decode(HC_GRANT_MAP, [1, 3, 0x7000, u64::MAX, 0, 0]),
            Some(Err(Error::Invalid))
        );
        assert_eq!(
            GrantOp::decode(HC_GRANT_UNMAP, [big, 0, 0, 0, 0, 0]),
            Some(Err(Error::Invalid))
        );
        assert_eq!(GrantOp::decode(20, [0; 6]), None);
    }

    #[test]
    fn decodes_the_1_3_ops() {
        let big = 1u64 << 32;
        assert_eq!(
            GrantOp::decode(HC_GRANT_COPY, [1, 5, 4000, 0x9000, 96, 1]),
            Some(Ok(GrantOp::Copy {
                granter: DomainId(1),
                gref: 5,
                offset: 4000,
                local: 0x9000,
                len: 96,
                to_grant: true
            }))
        );
        assert_eq!(
            GrantOp::decode(HC_GRANT_COPY, [1, 5, u64::MAX, u64::MAX, u64::MAX, 0]),
            Some(Ok(GrantOp::Copy {
                granter: DomainId(1),
                gref: 5,
                offset: u64::MAX,
                local: u64::MAX,
                len: u64::MAX,
                to_grant: false
            })),
            "offset, buffer and length are the service's to check"
        );
        for bad in [
            [big, 5, 0, 0, 1, 0],
            [1, big, 0, 0, 1, 0],
            [1, 5, 0, 0, 1, 2],
            [1, 5, 0, 0, 1, 3],
        ] {
            assert_eq!(
                GrantOp::decode(HC_GRANT_COPY, bad),
                Some(Err(Error::Invalid))
            );
        }
        assert_eq!(
            GrantOp::decode(HC_GRANT_QUERY, [0x8000, 9, 9, 9, 9, 9]),
            Some(Ok(GrantOp::Query { gpa: 0x8000 }))
        );
        assert_eq!(
            GrantOp::decode(HC_GRANT_SET_MAX, [2048, 4096, 0, 0, 0, 0]),
            Some(Ok(GrantOp::SetMax {
                grants: 2048,
                maps: 4096
            }))
        );
        assert_eq!(
            GrantOp::decode(HC_GRANT_SET_MAX, [big, 4096, 0, 0, 0, 0]),
            Some(Err(Error::Invalid))
        );
        assert_eq!(
            GrantOp::decode(HC_GRANT_SET_MAX, [2048, big, 0, 0, 0, 0]),
            Some(Err(Error::Invalid))
        );
    }
}
