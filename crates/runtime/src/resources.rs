//! A container's resource limits (`--cpus`, `-m/--memory`, `--pids-limit`) and how they size
//! its VM.
//!
//! Each container has a VM of its own, so a limit is enforced twice over: the VM is sized from
//! it, and the container's cgroup v2 inside the guest (`/sys/fs/cgroup/<id>`, written by
//! vminitd) enforces it exactly:
//!
//! | flag            | VM                                   | container cgroup                 |
//! |-----------------|--------------------------------------|----------------------------------|
//! | `--cpus N`      | ceil(N) vCPUs                        | `cpu.max` = N×100000 100000       |
//! | `-m SIZE`       | SIZE + [`VM_MEMORY_OVERHEAD_MIB`] + SIZE/16 | `memory.max` = SIZE        |
//! | `--pids-limit N`| —                                    | `pids.max` = N                   |
//!
//! The memory overhead is the guest's own share, measured with the Debian cloud kernel 6.1:
//! memory the kernel reserves at boot (its image and the page structs: 35 MiB of a 128 MiB VM,
//! 51 MiB of a 1 GiB one), unreclaimable kernel memory and vminitd (25–32 MiB), and the free
//! memory the kernel keeps back (`min_free_kbytes`: with transparent huge pages 5% of the RAM,
//! up to 44 MiB). With 96 MiB + SIZE/32 a 1 GiB container still met the guest-wide OOM killer
//! before its own limit; with 128 MiB + SIZE/16 the cgroup limit comes first at 128 MiB and at
//! 1 GiB. So a container that allocates past its limit is OOM-killed inside its cgroup while
//! the guest still has room; vminitd is additionally shielded from the OOM killer
//! (`oom_score_adj` -1000) for the case without `-m`. Untouched guest memory costs the host
//! nothing, so the generous overhead is cheap. Without `-m` there is no `memory.max` (as in docker) and the VM gets
//! [`DEFAULT_VM_MEMORY_MIB`]; without `--cpus` the VM gets one vCPU and no quota.

use serde::{Deserialize, Serialize};

/// Memory the guest keeps for itself on top of a container's `-m` limit, in MiB.
pub const VM_MEMORY_OVERHEAD_MIB: u64 = 128;
/// VM memory when no `-m` is given, in MiB.
pub const DEFAULT_VM_MEMORY_MIB: u64 = 512;
/// The CFS period of `cpu.max`, in microseconds (docker's and the kernel's default).
pub const CPU_PERIOD_US: u64 = 100_000;
/// Most vCPUs a VM may have.
pub const MAX_CPUS: u32 = 64;
/// Smallest memory limit (docker's: a process needs some memory to start at all).
pub const MIN_MEMORY_BYTES: u64 = 6 << 20;

/// Errors in resource flags.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ResourceError {
    /// `--cpus` is not a positive number up to [`MAX_CPUS`].
    #[error(
        "invalid --cpus {0}: use a number of CPUs greater than 0 and at most {MAX_CPUS}, e.g. 1.5"
    )]
    Cpus(String),
    /// `-m` is below [`MIN_MEMORY_BYTES`] or absurdly large.
    #[error("invalid memory limit {0} bytes: the minimum is 6 MiB, the maximum 1 TiB")]
    Memory(u64),
}

/// The resource flags as given (`--cpus`, `-m`, `--pids-limit`): for `create`, an unset one
/// means no limit; for `update`, it leaves the current limit as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ResourceFlags {
    /// `--cpus` (fractions allowed).
    pub cpus: Option<f64>,
    /// `-m`, in bytes.
    pub memory_bytes: Option<u64>,
    /// `--pids-limit` (0 or negative: unlimited).
    pub pids_limit: Option<i64>,
}

/// The limits the user asked for; `None` means unlimited. Kept in the container's config
/// (so `inspect` shows them) with docker's units: `NanoCpus`, bytes, a process count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceLimits {
    /// CPU limit in billionths of a CPU (`--cpus 1.5` is 1500000000), docker's `NanoCpus`.
    #[serde(default)]
    pub nano_cpus: Option<u64>,
    /// Memory limit in bytes (`memory.max`).
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    /// Most processes the container may have (`pids.max`).
    #[serde(default)]
    pub pids_limit: Option<u64>,
}

impl ResourceLimits {
    /// Limits from the flags: `--cpus` as given (fractional allowed), `-m` in bytes,
    /// `--pids-limit` where 0 or a negative number means unlimited (docker's rule).
    pub fn from_flags(
        cpus: Option<f64>,
        memory_bytes: Option<u64>,
        pids_limit: Option<i64>,
    ) -> Result<ResourceLimits, ResourceError> {
        let nano_cpus = match cpus {
            None => None,
            Some(c) if c.is_finite() && c > 0.0 && c <= f64::from(MAX_CPUS) => {
                // Round to a millionth of a CPU: enough for any quota, immune to 0.1+0.2 noise.
                // c is in (0, MAX_CPUS] here, so the product is positive and small.
                #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
                let nano = (c * 1e6).round() as u64 * 1000;
                if nano == 0 {
                    return Err(ResourceError::Cpus(c.to_string()));
                }
                Some(nano)
            }
            Some(c) => return Err(ResourceError::Cpus(c.to_string())),
        };
        if let Some(m) = memory_bytes {
            if !(MIN_MEMORY_BYTES..=1 << 40).contains(&m) {
                return Err(ResourceError::Memory(m));
            }
        }
        Ok(ResourceLimits {
            nano_cpus,
            memory_bytes,
            pids_limit: pids_limit
                .and_then(|p| u64::try_from(p).ok())
                .filter(|p| *p > 0),
        })
    }

    /// vCPUs of the VM: enough whole CPUs for the limit (1 without one).
    pub fn vm_cpus(&self) -> u32 {
        match self.nano_cpus {
            Some(n) => u32::try_from(n.div_ceil(1_000_000_000))
                .unwrap_or(MAX_CPUS)
                .clamp(1, MAX_CPUS),
            None => 1,
        }
    }

    /// Memory of the VM in MiB: the limit plus the guest's overhead (see the module docs).
    pub fn vm_memory_mib(&self) -> u64 {
        match self.memory_bytes {
            Some(b) => {
                let mib = b.div_ceil(1 << 20);
                mib + VM_MEMORY_OVERHEAD_MIB + mib.div_ceil(16)
            }
            None => DEFAULT_VM_MEMORY_MIB,
        }
    }

    /// The `cpu.max` quota for [`CPU_PERIOD_US`], in microseconds.
    pub fn cpu_quota_us(&self) -> Option<u64> {
        // 1 CPU = 1e9 nano CPUs = one full period; the kernel refuses quotas under 1 ms.
        self.nano_cpus
            .map(|n| (n * CPU_PERIOD_US / 1_000_000_000).max(1000))
    }

    /// Whether any limit is set (and the guest must be told).
    pub fn is_empty(&self) -> bool {
        self.nano_cpus.is_none() && self.memory_bytes.is_none() && self.pids_limit.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractional_cpus_round_up_the_vm_and_set_the_quota() {
        let l = ResourceLimits::from_flags(Some(1.5), None, None).unwrap();
        assert_eq!(l.nano_cpus, Some(1_500_000_000));
        assert_eq!(l.vm_cpus(), 2);
        assert_eq!(l.cpu_quota_us(), Some(150_000));
        let l = ResourceLimits::from_flags(Some(0.5), None, None).unwrap();
        assert_eq!((l.vm_cpus(), l.cpu_quota_us()), (1, Some(50_000)));
        let l = ResourceLimits::from_flags(Some(2.0), None, None).unwrap();
        assert_eq!((l.vm_cpus(), l.cpu_quota_us()), (2, Some(200_000)));
        // 0.1 + 0.2 style noise does not make 0.3 CPUs need a second vCPU or odd quotas.
        let l = ResourceLimits::from_flags(Some(0.1 + 0.2), None, None).unwrap();
        assert_eq!((l.nano_cpus, l.vm_cpus()), (Some(300_000_000), 1));
        let l = ResourceLimits::from_flags(Some(0.001), None, None).unwrap();
        assert_eq!(l.cpu_quota_us(), Some(1000));
    }

    #[test]
    fn no_flags_mean_one_cpu_default_memory_and_no_limits() {
        let l = ResourceLimits::from_flags(None, None, None).unwrap();
        assert!(l.is_empty());
        assert_eq!(l.vm_cpus(), 1);
        assert_eq!(l.vm_memory_mib(), DEFAULT_VM_MEMORY_MIB);
        assert_eq!(l.cpu_quota_us(), None);
    }

    #[test]
    fn bad_cpus_are_refused() {
        for c in [0.0, -1.0, 65.0, f64::NAN, f64::INFINITY, 1e-9] {
            assert!(
                ResourceLimits::from_flags(Some(c), None, None).is_err(),
                "{c}"
            );
        }
        assert!(ResourceLimits::from_flags(Some(64.0), None, None).is_ok());
    }

    #[test]
    fn memory_limit_adds_the_guest_overhead() {
        let l = ResourceLimits::from_flags(None, Some(128 << 20), None).unwrap();
        assert_eq!(l.vm_memory_mib(), 128 + VM_MEMORY_OVERHEAD_MIB + 8);
        let l = ResourceLimits::from_flags(None, Some(1 << 30), None).unwrap();
        assert_eq!(l.vm_memory_mib(), 1024 + VM_MEMORY_OVERHEAD_MIB + 64);
        // A limit that is not a whole MiB still fits.
        let l = ResourceLimits::from_flags(None, Some((100 << 20) + 1), None).unwrap();
        assert_eq!(l.vm_memory_mib(), 101 + VM_MEMORY_OVERHEAD_MIB + 7);
        assert!(ResourceLimits::from_flags(None, Some(1 << 20), None).is_err());
    }

    #[test]
    fn pids_limit_of_zero_or_less_is_unlimited() {
        let l = |p| ResourceLimits::from_flags(None, None, Some(p)).unwrap();
        assert_eq!(l(10).pids_limit, Some(10));
        assert_eq!(l(0).pids_limit, None);
        assert_eq!(l(-1).pids_limit, None);
    }

    #[test]
    fn limits_serialize_with_docker_like_names() {
        let l = ResourceLimits::from_flags(Some(1.5), Some(128 << 20), Some(10)).unwrap();
        let v = serde_json::to_value(l).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"nanoCpus": 1_500_000_000u64, "memoryBytes": 134217728u64, "pidsLimit": 10})
        );
        let back: ResourceLimits = serde_json::from_value(serde_json::json!({})).unwrap();
        assert!(back.is_empty());
    }
}
