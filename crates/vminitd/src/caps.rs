//! Capability sets as bit masks (names and numbers come from `agent::caps`), and their
//! application in the child before exec: bounding set drop, then capset(2) and the ambient set.

/// A capability set as a bit mask.
pub type Mask = u64;

/// Converts names to a mask; an unknown name is returned as the error.
pub fn mask(names: &[impl AsRef<str>]) -> Result<Mask, String> {
    let mut m = 0u64;
    for n in names {
        let n = n.as_ref();
        m |= 1 << agent::caps::number(n).ok_or_else(|| n.to_string())?;
    }
    Ok(m)
}

/// The five sets to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapSets {
    /// Bounding.
    pub bounding: Mask,
    /// Effective.
    pub effective: Mask,
    /// Permitted.
    pub permitted: Mask,
    /// Inheritable.
    pub inheritable: Mask,
    /// Ambient.
    pub ambient: Mask,
}

/// Highest capability the running kernel knows.
fn last_cap() -> usize {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(agent::caps::ALL.len() - 1)
}

/// Drops everything outside `bounding` from the bounding set (needs CAP_SETPCAP; call while
/// still root).
pub fn drop_bounding(bounding: Mask) -> std::io::Result<()> {
    for cap in 0..=last_cap().min(63) {
        if bounding & (1 << cap) == 0 {
            // SAFETY: prctl with integer arguments only.
            let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
            if r != 0 {
                let e = std::io::Error::last_os_error();
                // EINVAL: the kernel does not know this capability.
                if e.raw_os_error() != Some(libc::EINVAL) {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Sets effective/permitted/inheritable with capset(2), then the ambient set. Call after
/// setuid (with PR_SET_KEEPCAPS set before it).
pub fn apply(sets: &CapSets) -> std::io::Result<()> {
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let split = |m: Mask| (m as u32, (m >> 32) as u32);
    let (e0, e1) = split(sets.effective);
    let (p0, p1) = split(sets.permitted);
    let (i0, i1) = split(sets.inheritable);
    let data = [
        CapData {
            effective: e0,
            permitted: p0,
            inheritable: i0,
        },
        CapData {
            effective: e1,
            permitted: p1,
            inheritable: i1,
        },
    ];
    // SAFETY: header and a two-element data array as capset(2) version 3 expects; both live
    // across the call.
    crate::sys::cvt(unsafe {
        libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr())
    })?;
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    for cap in 0..64u64 {
        if sets.ambient & (1 << cap) != 0 {
            // SAFETY: prctl with integer arguments only.
            let r = unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                    cap as libc::c_ulong,
                    0,
                    0,
                )
            };
            crate::sys::cvt(r)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_to_mask() {
        assert_eq!(
            mask(&["CAP_CHOWN", "kill", "cap_sys_admin"]).unwrap(),
            1 | 1 << 5 | 1 << 21
        );
        assert_eq!(mask(&["CAP_NOPE"]).unwrap_err(), "CAP_NOPE");
        assert_eq!(mask(&agent::caps::DEFAULT).unwrap().count_ones(), 14);
    }
}
