//! Structured layers: arbitrary entries (odd names, "..", absolute paths, whiteouts, links,
//! type changes, xattrs) written as real tars, several layers deep.
#![no_main]

mod check;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Kind {
    File(u16, u8),
    Dir,
    Symlink(u8),
    Hardlink(u8),
    Char(u16, u32),
    Fifo,
    Whiteout,
    Opaque,
}

#[derive(Debug, Arbitrary)]
struct Entry {
    path: u8,
    kind: Kind,
    mode: u16,
    uid: u16,
    xattr: Option<(u8, Vec<u8>)>,
}

const NAMES: [&str; 16] = [
    "a",
    "b",
    "a/b",
    "a/b/c",
    "../a",
    "/b/c",
    "./a/./b",
    "a/../../c",
    "lnk/x",
    "lnk",
    "d/e",
    "..",
    "/",
    "a/b/c/d/e/f",
    "x\u{e9}",
    "dup",
];

fn layer(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let path = NAMES[e.path as usize % NAMES.len()];
        let mut h = tar::Header::new_gnu();
        h.set_mode(u32::from(e.mode));
        h.set_uid(u64::from(e.uid));
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(0);
        if let Some((k, v)) = &e.xattr {
            let name = ["user.a", "trusted.b", "security.capability", "bogus.c"][*k as usize % 4];
            let rec_body = format!(" SCHILY.xattr.{name}=");
            let body_len = rec_body.len() + v.len() + 1;
            let mut len = body_len + 1;
            while len.to_string().len() + body_len != len {
                len = len.to_string().len() + body_len;
            }
            let mut data = format!("{len}{rec_body}").into_bytes();
            data.extend_from_slice(v);
            data.push(b'\n');
            let mut x = tar::Header::new_ustar();
            x.set_entry_type(tar::EntryType::XHeader);
            x.set_size(data.len() as u64);
            x.set_cksum();
            let _ = b.append(&x, data.as_slice());
        }
        let set = |h: &mut tar::Header, p: &str| {
            let bytes = p.as_bytes();
            let n = bytes.len().min(99);
            if let Some(g) = h.as_gnu_mut() {
                g.name = [0; 100];
                g.name[..n].copy_from_slice(&bytes[..n]);
            }
        };
        let data: Vec<u8>;
        match &e.kind {
            Kind::File(len, fill) => {
                h.set_entry_type(tar::EntryType::Regular);
                data = vec![*fill; *len as usize * 7];
                h.set_size(data.len() as u64);
                set(&mut h, path);
            }
            Kind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                data = Vec::new();
                set(&mut h, path);
            }
            Kind::Symlink(t) | Kind::Hardlink(t) => {
                h.set_entry_type(if matches!(e.kind, Kind::Symlink(_)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                let target = NAMES[*t as usize % NAMES.len()];
                if let Some(g) = h.as_gnu_mut() {
                    let n = target.len().min(99);
                    g.linkname[..n].copy_from_slice(&target.as_bytes()[..n]);
                }
                data = Vec::new();
                set(&mut h, path);
            }
            Kind::Char(major, minor) => {
                h.set_entry_type(tar::EntryType::Char);
                let _ = h.set_device_major(u32::from(*major));
                let _ = h.set_device_minor(*minor & 0x1f_ffff);
                data = Vec::new();
                set(&mut h, path);
            }
            Kind::Fifo => {
                h.set_entry_type(tar::EntryType::Fifo);
                data = Vec::new();
                set(&mut h, path);
            }
            Kind::Whiteout | Kind::Opaque => {
                h.set_entry_type(tar::EntryType::Regular);
                data = Vec::new();
                let p = if matches!(e.kind, Kind::Opaque) {
                    format!("{path}/.wh..wh..opq")
                } else {
                    match path.rsplit_once('/') {
                        Some((d, n)) => format!("{d}/.wh.{n}"),
                        None => format!(".wh.{path}"),
                    }
                };
                set(&mut h, &p);
            }
        }
        h.set_cksum();
        let _ = b.append(&h, data.as_slice());
    }
    b.into_inner().unwrap_or_default()
}

fuzz_target!(|stack: Vec<Vec<Entry>>| {
    let layers: Vec<Vec<u8>> = stack.iter().take(4).map(|l| layer(l)).collect();
    if !layers.is_empty() {
        check::build_and_check(&layers);
    }
});
