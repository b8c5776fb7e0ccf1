//! Where the guest's init (`vminitd`) is on the host: it must be a static binary, since the
//! guest has no libc to load a dynamic one with.

use std::path::PathBuf;

/// The static vminitd for the guest: $CONTAINER_VMINITD, else next to this executable, else
/// `../libexec/container/vminitd` from it (the Debian package), else
/// `<exe dir>/../x86_64-unknown-linux-gnu/{release,debug}/vminitd` (where setup.sh builds it).
/// Candidates found by search that are dynamically linked (a plain `cargo build` of the
/// workspace puts one next to us) are skipped: the guest has no libc to load them with.
pub fn find() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CONTAINER_VMINITD") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    // Next to the binary (a build or a tarball), then where the Debian package installs it
    // (/usr/bin/container → /usr/libexec/container/vminitd).
    let mut candidates = vec![
        dir.join("vminitd"),
        dir.join("..")
            .join("libexec")
            .join("container")
            .join("vminitd"),
    ];
    for profile in ["release", "debug"] {
        candidates.push(
            dir.join("..")
                .join("x86_64-unknown-linux-gnu")
                .join(profile)
                .join("vminitd"),
        );
    }
    candidates
        .into_iter()
        .find(|p| is_static_elf(p))
        .map(|p| p.canonicalize().unwrap_or(p))
}

/// Whether `path` is an ELF executable without a program interpreter (PT_INTERP), i.e. static.
fn is_static_elf(path: &std::path::Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    static_elf(&bytes)
}

fn static_elf(b: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |o: usize| {
        b.get(o..o + 2)
            .map(|s| u16::from_le_bytes([s[0], s[1]]) as usize)
    };
    let u32_at = |o: usize| {
        b.get(o..o + 4)
            .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    };
    let u64_at = |o: usize| {
        b.get(o..o + 8)
            .and_then(|s| s.try_into().ok())
            .map(u64::from_le_bytes)
    };
    // ELF64, little endian (x86_64 guests only).
    if b.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    (0..phnum).all(|i| u32_at(phoff as usize + i * phentsize) != Some(PT_INTERP))
}

#[cfg(test)]
mod tests {
    #[test]
    fn static_binaries_are_told_from_dynamic_ones() {
        // This test binary is dynamically linked; /bin/busybox (busybox-static) is not.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(!super::static_elf(&me));
        let busybox = std::fs::read("/bin/busybox").expect("/bin/busybox (busybox-static)");
        assert!(super::static_elf(&busybox));
        assert!(!super::static_elf(b"#!/bin/sh\n"));
    }
}
