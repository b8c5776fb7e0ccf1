//! Guest-side probe of `cli/tests/escape.rs`: the open-by-handle trick on a virtiofs share.
//! It takes the handle of a file on the share (`name_to_handle_at`), opens it back
//! (`open_by_handle_at`, which needs CAP_DAC_READ_SEARCH: a privileged container), then
//! opens forged handles (other FUSE node ids and generations, the parent form) and prints
//! what each one reaches, one line per handle, what it is and what it reached apart by a tab:
//!
//! ```text
//! handle type=129 bytes=000000000000000512345678
//! legit<TAB>file 7 inside\n
//! forged node=1 gen=0<TAB>dir a,b,inside
//! forged node=2 gen=0<TAB>errno=116
//! ```
//!
//! Regular files print up to 64 bytes (escaped), directories their sorted names. Built
//! statically for the guest (busybox has no `open_by_handle_at`).
//!
//! Usage: `fhprobe SHARE_DIR FILE_ON_SHARE`

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

/// `struct file_handle` with room for any handle the kernel makes (MAX_HANDLE_SZ is 128).
#[repr(C)]
struct FileHandle {
    bytes: u32,
    kind: i32,
    f: [u8; 128],
}

/// The FUSE client's handle types (include/linux/exportfs.h): node id and generation, and
/// the same followed by the parent's.
const FILEID_INO64_GEN: i32 = 0x81;
const FILEID_INO64_GEN_PARENT: i32 = 0x82;

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn name_to_handle(path: &str) -> Result<(i32, Vec<u8>), i32> {
    let c = CString::new(path).map_err(|_| libc::EINVAL)?;
    let mut h = FileHandle {
        bytes: 128,
        kind: 0,
        f: [0; 128],
    };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: valid path, a handle buffer of the size it declares, a valid int.
    let r = unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            libc::AT_FDCWD,
            c.as_ptr(),
            std::ptr::from_mut(&mut h),
            std::ptr::from_mut(&mut mount_id),
            0,
        )
    };
    if r != 0 {
        return Err(errno());
    }
    Ok((h.kind, h.f[..h.bytes as usize].to_vec()))
}

fn open_by_handle(mount: &OwnedFd, kind: i32, bytes: &[u8]) -> Result<OwnedFd, i32> {
    use std::os::fd::AsRawFd;
    let mut h = FileHandle {
        bytes: u32::try_from(bytes.len()).map_err(|_| libc::EINVAL)?,
        kind,
        f: [0; 128],
    };
    h.f[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: a valid directory fd and a handle buffer holding `bytes` bytes.
    let r = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount.as_raw_fd(),
            std::ptr::from_mut(&mut h),
            libc::O_RDONLY,
        )
    };
    if r < 0 {
        return Err(errno());
    }
    // SAFETY: the syscall returned a new fd that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}

/// What an opened fd is: a file's first bytes or a directory's names.
fn describe(fd: OwnedFd) -> String {
    use std::os::fd::AsRawFd;
    let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    match std::fs::read_dir(&proc_path) {
        Ok(entries) => {
            let mut names: Vec<String> = entries
                .flatten()
                .map(|e| String::from_utf8_lossy(e.file_name().as_bytes()).into_owned())
                .collect();
            names.sort();
            format!("dir {}", names.join(","))
        }
        Err(_) => {
            let mut buf = Vec::new();
            let mut f = std::fs::File::from(fd);
            match (&mut f).take(64).read_to_end(&mut buf) {
                Ok(n) => format!("file {n} {}", buf.escape_ascii()),
                Err(e) => format!("unreadable {e}"),
            }
        }
    }
}

/// Prints one handle's line: `label`, a tab, and what it opened or the errno.
fn report(label: &str, opened: Result<OwnedFd, i32>) {
    match opened {
        Ok(fd) => println!("{label}\t{}", describe(fd)),
        Err(e) => println!("{label}\terrno={e}"),
    }
}

/// A FUSE handle for `node` and `generation` (the kernel's layout: node id high word, low
/// word, generation, native endian u32s).
fn fuse_handle(node: u64, generation: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(12);
    v.extend_from_slice(&((node >> 32) as u32).to_ne_bytes());
    v.extend_from_slice(&(node as u32).to_ne_bytes());
    v.extend_from_slice(&generation.to_ne_bytes());
    v
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, share, file] = args.as_slice() else {
        eprintln!("usage: fhprobe SHARE_DIR FILE_ON_SHARE");
        std::process::exit(2);
    };
    let c = CString::new(share.as_str()).expect("share path");
    // SAFETY: valid C string.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) };
    if fd < 0 {
        eprintln!("open {share}: errno {}", errno());
        std::process::exit(1);
    }
    // SAFETY: a new fd we own.
    let mount = unsafe { OwnedFd::from_raw_fd(fd) };
    let (kind, bytes) = match name_to_handle(file) {
        Ok(h) => h,
        Err(e) => {
            println!("no handle errno={e}");
            return;
        }
    };
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    println!("handle type={kind} bytes={hex}");
    report("legit", open_by_handle(&mount, kind, &bytes));
    let own = (kind == FILEID_INO64_GEN && bytes.len() >= 12).then(|| {
        let w = |i: usize| u32::from_ne_bytes(bytes[i * 4..i * 4 + 4].try_into().unwrap_or([0; 4]));
        ((u64::from(w(0)) << 32) | u64::from(w(1)), w(2))
    });
    let (node, generation) = own.unwrap_or((1, 0));
    // Node ids the guest was never given and some it was, each with the file's generation and
    // with 0; then the parent form, which names a second node.
    let mut nodes: Vec<u64> = (0..=64).collect();
    nodes.extend((1..=16).map(|d| node.wrapping_add(d)));
    nodes.extend([
        node.wrapping_sub(1),
        1 << 32,
        u64::MAX,
        u64::MAX - 1,
        0x8000_0000_0000_0001,
    ]);
    for n in nodes {
        for g in [generation, 0] {
            let h = fuse_handle(n, g);
            report(
                &format!("forged node={n} gen={g}"),
                open_by_handle(&mount, FILEID_INO64_GEN, &h),
            );
        }
        let mut h = fuse_handle(n, generation);
        h.extend_from_slice(&fuse_handle(1, 0));
        report(
            &format!("forged-parent node={n}"),
            open_by_handle(&mount, FILEID_INO64_GEN_PARENT, &h),
        );
    }
}
