//! The host side of `container build`: contexts, COPY/ADD/WORKDIR layers and their digests,
//! on temporary directories (no VMs). The last test compares with buildah (root only).

use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use builder::{
    plan, source_digest, tree_digest, workdir_layer, workdir_owner, Context, CopyEnv, CopyError,
    CopySource, CopySpec, DirTree, DockerfileAt, EmptyTree, LayerPlan, NoUsers, Op, SourceTree,
    StageTree, Tree, UserDb,
};

/// One entry of a written layer, as a reader of the tar sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    path: String,
    kind: char,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    link: String,
    data: Vec<u8>,
}

fn read_tar(bytes: &[u8]) -> Vec<Item> {
    let mut out = Vec::new();
    let mut archive = tar::Archive::new(bytes);
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let kind = match h.entry_type() {
            tar::EntryType::Regular => 'f',
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Link => 'h',
            tar::EntryType::Char => 'c',
            tar::EntryType::Block => 'b',
            tar::EntryType::Fifo => 'p',
            other => panic!("unexpected entry type {other:?}"),
        };
        let raw = String::from_utf8(e.path_bytes().to_vec()).unwrap();
        let link = e
            .link_name_bytes()
            .map(|l| String::from_utf8(l.to_vec()).unwrap())
            .unwrap_or_default();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.push(Item {
            path: raw.trim_end_matches('/').to_string(),
            kind,
            mode: h.mode().unwrap(),
            uid: h.uid().unwrap(),
            gid: h.gid().unwrap(),
            mtime: h.mtime().unwrap(),
            link,
            data,
        });
    }
    out
}

fn write(plan: &LayerPlan) -> (Vec<Item>, Vec<u8>) {
    let mut tar = Vec::new();
    let digests = plan.write(&mut tar, None).unwrap();
    assert_eq!(digests.diff_id, oci::Digest::of(&tar));
    (read_tar(&tar), tar)
}

fn find<'a>(items: &'a [Item], path: &str) -> &'a Item {
    items
        .iter()
        .find(|i| i.path == path)
        .unwrap_or_else(|| panic!("{path} not in layer: {:?}", paths(items)))
}

fn paths(items: &[Item]) -> Vec<&str> {
    items.iter().map(|i| i.path.as_str()).collect()
}

/// Writes files under `root`: `dir/` makes a directory, anything else a file.
fn files(root: &Path, list: &[(&str, &str)]) {
    for (path, content) in list {
        let p = root.join(path);
        if path.ends_with('/') {
            fs::create_dir_all(&p).unwrap();
        } else {
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, content).unwrap();
        }
    }
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn set_mtime(path: &Path, secs: u64) {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    fs::File::options()
        .write(true)
        .open(path)
        .or_else(|_| fs::File::open(path))
        .unwrap()
        .set_modified(t)
        .unwrap();
}

/// A context directory with a Dockerfile and these files.
fn context(list: &[(&str, &str)]) -> (tempfile::TempDir, Context) {
    let dir = tempfile::tempdir().unwrap();
    files(dir.path(), &[("Dockerfile", "FROM scratch\n")]);
    files(dir.path(), list);
    let ctx = Context::from_dir(dir.path(), DockerfileAt::Default).unwrap();
    (dir, ctx)
}

fn reopen(dir: &Path) -> Context {
    Context::from_dir(dir, DockerfileAt::Default).unwrap()
}

fn copy(sources: &[&str], dest: &str) -> CopySpec {
    CopySpec::new(
        Op::Copy,
        sources
            .iter()
            .map(|s| CopySource::Path(s.to_string()))
            .collect(),
        dest,
    )
}

fn add(sources: &[&str], dest: &str) -> CopySpec {
    CopySpec {
        op: Op::Add,
        ..copy(sources, dest)
    }
}

fn run<'a>(
    spec: &'a CopySpec,
    source: &'a dyn SourceTree,
    stage: &'a dyn Tree,
) -> Result<Vec<Item>, CopyError> {
    let env = CopyEnv {
        source,
        stage,
        users: &NoUsers,
    };
    let plan = plan(spec, &env)?;
    Ok(write(&plan).0)
}

fn scratch() -> EmptyTree {
    EmptyTree::new("stage")
}

#[test]
fn dockerignore_excludes_and_reincludes_inside_excluded_directories() {
    let (dir, _) = context(&[
        ("app.go", "package main"),
        ("debug.log", "noise"),
        ("node_modules/a/index.js", "a"),
        ("node_modules/keep/README", "keep me"),
        ("node_modules/keep/other", "not me"),
        ("docs/guide.md", "guide"),
        ("docs/draft.md", "draft"),
    ]);
    fs::write(
        dir.path().join(".dockerignore"),
        "# comment\n*.log\nnode_modules\n!node_modules/keep/README\ndocs/draft.md\nDockerfile\n",
    )
    .unwrap();
    // A name that is not UTF-8 inside an excluded directory nobody re-includes from is
    // never read, so it cannot fail the build.
    fs::create_dir_all(dir.path().join("node_modules/a")).unwrap();
    fs::write(
        dir.path().join(<std::ffi::OsStr as OsStrExt>::from_bytes(
            b"node_modules/a/\xff",
        )),
        "x",
    )
    .unwrap();
    let ctx = reopen(dir.path());
    let listed: Vec<&str> = ctx.paths().collect();
    assert_eq!(
        listed,
        [
            "",
            ".dockerignore",
            "app.go",
            "docs",
            "docs/guide.md",
            "node_modules",
            "node_modules/keep",
            "node_modules/keep/README"
        ]
    );
    // The builder still reads an ignored Dockerfile; COPY does not see it.
    assert_eq!(ctx.dockerfile(), b"FROM scratch\n");
    let err = run(&copy(&["Dockerfile"], "/"), &ctx, &scratch()).unwrap_err();
    assert!(matches!(err, CopyError::NotFound { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "Dockerfile: not found in the build context"
    );

    let items = run(&copy(&["."], "/app/"), &ctx, &scratch()).unwrap();
    assert_eq!(
        paths(&items),
        [
            "app",
            "app/.dockerignore",
            "app/app.go",
            "app/docs",
            "app/docs/guide.md",
            "app/node_modules",
            "app/node_modules/keep",
            "app/node_modules/keep/README"
        ]
    );
}

#[test]
fn dockerfile_specific_ignore_file_wins() {
    let dir = tempfile::tempdir().unwrap();
    files(
        dir.path(),
        &[
            ("build/app.Dockerfile", "FROM scratch\n"),
            ("build/app.Dockerfile.dockerignore", "b.txt\n"),
            (".dockerignore", "a.txt\n"),
            ("a.txt", "a"),
            ("b.txt", "b"),
        ],
    );
    let ctx = Context::from_dir(
        dir.path(),
        DockerfileAt::Path(dir.path().join("build/app.Dockerfile")),
    )
    .unwrap();
    assert!(ctx.entry("a.txt").unwrap().is_some());
    assert!(ctx.entry("b.txt").unwrap().is_none());
}

#[test]
fn wildcards_follow_go_filepath_match() {
    let (_dir, ctx) = context(&[
        ("a.txt", "a"),
        ("b.txt", "b"),
        ("c.md", "c"),
        ("index.js", "js"),
        ("index.ts", "ts"),
        ("arr[0].txt", "arr"),
        ("src/x.go", "x"),
        ("src/sub/y.go", "y"),
        ("pkg/z.md", "z"),
    ]);
    let stage = scratch();
    let names = |sources: &[&str]| -> Vec<String> {
        run(&copy(sources, "/out/"), &ctx, &stage)
            .unwrap()
            .into_iter()
            .map(|i| i.path)
            .filter(|p| p != "out")
            .collect()
    };
    assert_eq!(
        names(&["*.txt"]),
        ["out/a.txt", "out/arr[0].txt", "out/b.txt"]
    );
    assert_eq!(names(&["index.?s"]), ["out/index.js", "out/index.ts"]);
    assert_eq!(names(&["[ab].txt"]), ["out/a.txt", "out/b.txt"]);
    assert_eq!(names(&["arr[[]0].txt"]), ["out/arr[0].txt"]);
    // `*` stays within one component; the match is the directory's contents for `src`.
    assert_eq!(names(&["src/*.go"]), ["out/x.go"]);
    assert_eq!(names(&["*/*.md"]), ["out/z.md"]);
    // A wildcard that matches nothing copies nothing (BuildKit allows it).
    let empty = run(&copy(&["*.rs"], "/out/"), &ctx, &stage).unwrap();
    assert!(empty.is_empty(), "{empty:?}");
    // A plain path that is missing is an error naming it.
    let err = run(&copy(&["nope.txt"], "/out/"), &ctx, &stage).unwrap_err();
    assert_eq!(err.to_string(), "nope.txt: not found in the build context");
    let err = run(&copy(&["[.txt"], "/out/"), &ctx, &stage).unwrap_err();
    assert!(matches!(err, CopyError::BadPattern(_)), "{err}");
}

#[test]
fn a_directory_source_copies_its_contents() {
    let (dir, _) = context(&[("dir/a", "a"), ("dir/sub/b", "b")]);
    chmod(&dir.path().join("dir"), 0o750);
    chmod(&dir.path().join("dir/sub"), 0o700);
    set_mtime(&dir.path().join("dir/a"), 1_600_000_000);
    let ctx = reopen(dir.path());
    let items = run(&copy(&["dir"], "/d"), &ctx, &scratch()).unwrap();
    assert_eq!(paths(&items), ["d", "d/a", "d/sub", "d/sub/b"]);
    // The destination is created (0755, root, the fixed time), not a copy of `dir`.
    let d = find(&items, "d");
    assert_eq!(
        (d.kind, d.mode, d.uid, d.gid, d.mtime),
        ('d', 0o755, 0, 0, 0)
    );
    // What is inside keeps its modes and mtimes; owners are root (the context's).
    assert_eq!(find(&items, "d/sub").mode, 0o700);
    let a = find(&items, "d/a");
    assert_eq!(
        (a.mode, a.uid, a.mtime, a.data.as_slice()),
        (0o644, 0, 1_600_000_000, &b"a"[..])
    );
    // `dir/` is the same as `dir`.
    let again = run(&copy(&["dir/"], "/d"), &ctx, &scratch()).unwrap();
    assert_eq!(again, items);
}

#[test]
fn destinations_with_and_without_a_trailing_slash() {
    let (_dir, ctx) = context(&[("f.txt", "f")]);
    let stage_dir = tempfile::tempdir().unwrap();
    files(stage_dir.path(), &[("existing/", ""), ("usr/bin/", "")]);
    symlink("usr/bin", stage_dir.path().join("bin")).unwrap();
    let stage = DirTree::new(stage_dir.path(), "stage");

    // No slash: the file is the destination.
    let items = run(&copy(&["f.txt"], "/x"), &ctx, &stage).unwrap();
    assert_eq!(paths(&items), ["x"]);
    assert_eq!(find(&items, "x").kind, 'f');
    // A slash: inside it, created.
    let items = run(&copy(&["f.txt"], "/x/"), &ctx, &stage).unwrap();
    assert_eq!(paths(&items), ["x", "x/f.txt"]);
    // No slash but an existing directory: inside it, and the directory is in the layer with
    // its metadata from the stage (so the layer unpacks on its own).
    let items = run(&copy(&["f.txt"], "/existing"), &ctx, &stage).unwrap();
    assert_eq!(paths(&items), ["existing", "existing/f.txt"]);
    // Relative to WORKDIR; missing parents are created.
    let mut spec = copy(&["f.txt"], "rel/");
    spec.workdir = "/srv/app".into();
    let items = run(&spec, &ctx, &stage).unwrap();
    assert_eq!(
        paths(&items),
        ["srv", "srv/app", "srv/app/rel", "srv/app/rel/f.txt"]
    );
    assert!(items
        .iter()
        .filter(|i| i.kind == 'd')
        .all(|i| i.mode == 0o755 && i.mtime == 0));
    // `.` is the working directory itself.
    let mut spec = copy(&["f.txt"], ".");
    spec.workdir = "/existing".into();
    assert_eq!(
        paths(&run(&spec, &ctx, &stage).unwrap()),
        ["existing", "existing/f.txt"]
    );
    // Through a symlink of the stage: /bin is usr/bin.
    let items = run(&copy(&["f.txt"], "/bin/"), &ctx, &stage).unwrap();
    assert_eq!(paths(&items), ["usr", "usr/bin", "usr/bin/f.txt"]);
}

#[test]
fn multiple_sources() {
    let (_dir, ctx) = context(&[("a", "a"), ("b", "b"), ("d1/x", "x"), ("d2/y", "y")]);
    let stage = scratch();
    let items = run(&copy(&["a", "b"], "/x/"), &ctx, &stage).unwrap();
    assert_eq!(paths(&items), ["x", "x/a", "x/b"]);
    // Two files into one destination file would keep only the last: refused.
    let err = run(&copy(&["a", "b"], "/x"), &ctx, &stage).unwrap_err();
    assert!(matches!(err, CopyError::MultipleSources { .. }), "{err}");
    assert!(err
        .to_string()
        .contains("must be a directory and end with a /"));
    let err = run(&copy(&["?"], "/x"), &ctx, &stage).unwrap_err();
    assert!(matches!(err, CopyError::MultipleSources { .. }), "{err}");
    // Directories merge into one destination, as BuildKit allows.
    let items = run(&copy(&["d1", "d2"], "/m"), &ctx, &stage).unwrap();
    assert_eq!(paths(&items), ["m", "m/x", "m/y"]);
    // Later sources win.
    let items = run(&copy(&["a", "b", "a"], "/x/"), &ctx, &stage).unwrap();
    assert_eq!(find(&items, "x/a").data, b"a");
}

#[test]
fn chown_by_name_and_id() {
    let (_dir, ctx) = context(&[("f", "f"), ("d/g", "g")]);
    let users = UserDb::parse(
        "root:x:0:0::/root:/bin/sh\napp:x:1500:1600::/home/app:/bin/sh\n",
        "root:x:0:\nweb:x:1700:\n",
    );
    let stage = scratch();
    let with = |chown: &str, sources: &[&str], dest: &str| {
        let mut spec = copy(sources, dest);
        spec.chown = Some(chown.into());
        let env = CopyEnv {
            source: &ctx,
            stage: &stage,
            users: &users,
        };
        plan(&spec, &env).map(|p| write(&p).0)
    };
    let owners = |items: &[Item]| -> Vec<(String, u64, u64)> {
        items
            .iter()
            .map(|i| (i.path.clone(), i.uid, i.gid))
            .collect()
    };
    // A name brings its primary group; created parents get the owner too.
    let items = with("app", &["f"], "/p/q/").unwrap();
    assert_eq!(
        owners(&items),
        [
            ("p".into(), 1500, 1600),
            ("p/q".into(), 1500, 1600),
            ("p/q/f".into(), 1500, 1600)
        ]
    );
    assert_eq!(
        owners(&with("app:web", &["f"], "/f").unwrap()),
        [("f".into(), 1500, 1700)]
    );
    assert_eq!(
        owners(&with("1234", &["f"], "/f").unwrap()),
        [("f".into(), 1234, 1234)]
    );
    assert_eq!(
        owners(&with("10:web", &["d"], "/d").unwrap())[1],
        ("d/g".into(), 10, 1700)
    );
    let err = with("nobody", &["f"], "/f").unwrap_err();
    assert_eq!(
        runtime::error_line(&err),
        "--chown=nobody: unable to find user nobody: no matching entries in the stage's /etc/passwd"
    );
    assert!(with("app:nogroup", &["f"], "/f").is_err());
    // Numbers need no user database at all.
    let mut spec = copy(&["f"], "/f");
    spec.chown = Some("7:8".into());
    let items = run(&spec, &ctx, &stage).unwrap();
    assert_eq!((items[0].uid, items[0].gid), (7, 8));
}

#[test]
fn chmod_applies_to_what_is_copied_not_to_created_parents() {
    let (dir, _) = context(&[("d/sub/x", "x"), ("f", "f")]);
    chmod(&dir.path().join("d/sub"), 0o711);
    let ctx = reopen(dir.path());
    let mut spec = copy(&["d"], "/a/b");
    spec.chmod = Some("640".into());
    let items = run(&spec, &ctx, &scratch()).unwrap();
    let modes: Vec<(&str, u32)> = items.iter().map(|i| (i.path.as_str(), i.mode)).collect();
    assert_eq!(
        modes,
        [
            ("a", 0o755),
            ("a/b", 0o755),
            ("a/b/sub", 0o640),
            ("a/b/sub/x", 0o640)
        ]
    );
    let mut spec = copy(&["f"], "/f");
    spec.chmod = Some("4755".into());
    assert_eq!(run(&spec, &ctx, &scratch()).unwrap()[0].mode, 0o4755);
    let mut spec = copy(&["f"], "/f");
    spec.chmod = Some("99".into());
    assert!(matches!(
        run(&spec, &ctx, &scratch()),
        Err(CopyError::Chmod(_))
    ));
}

#[test]
fn symlinks_are_copied_as_links_and_followed_only_at_the_top() {
    let (dir, _) = context(&[("d/target", "t"), ("real", "r")]);
    symlink("target", dir.path().join("d/rel")).unwrap();
    symlink("/etc/passwd", dir.path().join("d/abs")).unwrap();
    symlink("real", dir.path().join("top")).unwrap();
    let ctx = reopen(dir.path());
    let items = run(&copy(&["d"], "/d"), &ctx, &scratch()).unwrap();
    let abs = find(&items, "d/abs");
    assert_eq!(
        (abs.kind, abs.link.as_str(), abs.mode),
        ('l', "/etc/passwd", 0o777)
    );
    assert_eq!(find(&items, "d/rel").link, "target");
    // A source that is itself a symlink is followed: the file lands under the link's name.
    let items = run(&copy(&["top"], "/x/"), &ctx, &scratch()).unwrap();
    let top = find(&items, "x/top");
    assert_eq!((top.kind, top.data.as_slice()), ('f', &b"r"[..]));
}

#[test]
fn escapes_from_the_context_are_refused() {
    let (dir, _) = context(&[("inside", "i")]);
    symlink("../../outside", dir.path().join("up")).unwrap();
    symlink("/etc/hostname", dir.path().join("abs")).unwrap();
    fs::create_dir(dir.path().join("sub")).unwrap();
    symlink("../..", dir.path().join("sub/parent")).unwrap();
    let ctx = reopen(dir.path());
    let stage = scratch();
    let err = run(&copy(&["../x"], "/x"), &ctx, &stage).unwrap_err();
    assert_eq!(
        err.to_string(),
        "forbidden path outside the build context: ../x"
    );
    let err = run(&copy(&["a/../../x"], "/x"), &ctx, &stage).unwrap_err();
    assert!(matches!(err, CopyError::OutsideContext(_)), "{err}");
    for (source, link, target) in [
        ("up", "/up", "../../outside"),
        ("abs", "/abs", "/etc/hostname"),
        ("sub/parent/etc", "/sub/parent", "../.."),
    ] {
        let err = run(&copy(&[source], "/x"), &ctx, &stage).unwrap_err();
        assert_eq!(
            runtime::error_line(&err),
            format!(
                "{source}: symlink {link} in the build context points outside it (to {target:?})"
            )
        );
    }
    // A leading `/` is the context's root, not the host's.
    let items = run(&copy(&["/inside"], "/x"), &ctx, &stage).unwrap();
    assert_eq!(items[0].data, b"i");
}

#[test]
fn copy_from_a_root_filesystem_keeps_owners_and_resolves_links_inside_it() {
    let rootfs = tempfile::tempdir().unwrap();
    files(
        rootfs.path(),
        &[("usr/lib/libx.so.1", "elf"), ("opt/app/data", "d")],
    );
    symlink("libx.so.1", rootfs.path().join("usr/lib/libx.so")).unwrap();
    symlink("/usr/lib", rootfs.path().join("lib")).unwrap();
    std::os::unix::fs::chown(rootfs.path().join("opt/app/data"), Some(1000), Some(1001)).unwrap();
    let tree = DirTree::new(rootfs.path(), "stage build");
    let items = run(&copy(&["/opt/app"], "/app"), &tree, &scratch()).unwrap();
    let data = find(&items, "app/data");
    assert_eq!((data.uid, data.gid), (1000, 1001));
    // Absolute links resolve inside the tree (chroot-style), not on the host.
    let items = run(&copy(&["/lib/libx.so"], "/libx.so"), &tree, &scratch()).unwrap();
    assert_eq!(items[0].data, b"elf");
    // `..` above the root stays at the root, as in the stage itself.
    let items = run(&copy(&["../../opt/app/data"], "/data"), &tree, &scratch()).unwrap();
    assert_eq!(items[0].data, b"d");
}

#[test]
fn hard_links_stay_hard_links() {
    let (dir, _) = context(&[("d/a", "same")]);
    fs::hard_link(dir.path().join("d/a"), dir.path().join("d/b")).unwrap();
    let ctx = reopen(dir.path());
    let items = run(&copy(&["d"], "/d"), &ctx, &scratch()).unwrap();
    let (a, b) = (find(&items, "d/a"), find(&items, "d/b"));
    assert_eq!((a.kind, a.data.as_slice()), ('f', &b"same"[..]));
    assert_eq!((b.kind, b.link.as_str()), ('h', "d/a"));
    // A single file of a group is just a file.
    let items = run(&copy(&["d/b"], "/b"), &ctx, &scratch()).unwrap();
    assert_eq!(items[0].kind, 'f');
}

fn sample_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_ustar();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o750);
    dir.set_uid(5);
    dir.set_gid(6);
    dir.set_mtime(1_500_000_000);
    dir.set_size(0);
    b.append_data(&mut dir, "t/", std::io::empty()).unwrap();
    let mut f = tar::Header::new_ustar();
    f.set_mode(0o640);
    f.set_uid(5);
    f.set_gid(6);
    f.set_mtime(1_500_000_001);
    f.set_size(2);
    b.append_data(&mut f, "t/tt", &b"tt"[..]).unwrap();
    let mut l = tar::Header::new_ustar();
    l.set_entry_type(tar::EntryType::Symlink);
    l.set_size(0);
    l.set_mode(0o777);
    b.append_link(&mut l, "t/ttl", "tt").unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Link);
    h.set_size(0);
    h.set_mode(0o640);
    b.append_link(&mut h, "t/hard", "t/tt").unwrap();
    b.into_inner().unwrap()
}

#[test]
fn add_extracts_local_archives_of_every_compression() {
    let plain = sample_tar();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&plain).unwrap();
    let gz = gz.finish().unwrap();
    let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
    xz.write_all(&plain).unwrap();
    let xz = xz.finish().unwrap();
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    bz.write_all(&plain).unwrap();
    let bz = bz.finish().unwrap();
    let dir = tempfile::tempdir().unwrap();
    files(dir.path(), &[("Dockerfile", "FROM scratch\n")]);
    // The names are misleading on purpose: only the content counts.
    for (name, bytes) in [
        ("a.tar", &plain),
        ("b.tgz", &gz),
        ("c.tar.xz", &xz),
        ("d.bin", &bz),
    ] {
        fs::write(dir.path().join(name), bytes).unwrap();
    }
    let ctx = reopen(dir.path());
    for name in ["a.tar", "b.tgz", "c.tar.xz", "d.bin"] {
        let items = run(&add(&[name], "/x"), &ctx, &scratch()).unwrap();
        assert_eq!(
            paths(&items),
            ["x", "x/t", "x/t/hard", "x/t/tt", "x/t/ttl"],
            "{name}"
        );
        let t = find(&items, "x/t");
        assert_eq!(
            (t.mode, t.uid, t.gid, t.mtime),
            (0o750, 5, 6, 1_500_000_000),
            "{name}"
        );
        assert_eq!(find(&items, "x/t/tt").mode, 0o640, "{name}");
        assert_eq!(find(&items, "x/t/ttl").link, "tt");
        // Within the archive, a hard link stays one (to the first name in path order).
        let hard = find(&items, "x/t/hard");
        assert_eq!((hard.kind, hard.data.as_slice()), ('f', &b"tt"[..]));
        assert_eq!(find(&items, "x/t/tt").kind, 'h');
        assert_eq!(find(&items, "x/t/tt").link, "x/t/hard");
    }
    // --chown applies to the entries (BuildKit), --chmod does not.
    let mut spec = add(&["b.tgz"], "/x/");
    spec.chown = Some("7:8".into());
    spec.chmod = Some("600".into());
    let items = run(&spec, &ctx, &scratch()).unwrap();
    assert!(items.iter().all(|i| (i.uid, i.gid) == (7, 8)));
    assert_eq!(find(&items, "x/t").mode, 0o750);
    // --unpack=false, or COPY: the archive is a file.
    let mut spec = add(&["b.tgz"], "/x/");
    spec.unpack = Some(false);
    assert_eq!(
        paths(&run(&spec, &ctx, &scratch()).unwrap()),
        ["x", "x/b.tgz"]
    );
    assert_eq!(
        paths(&run(&copy(&["b.tgz"], "/x/"), &ctx, &scratch()).unwrap()),
        ["x", "x/b.tgz"]
    );
}

#[test]
fn add_refuses_archives_that_escape_or_fake_whiteouts() {
    let dir = tempfile::tempdir().unwrap();
    files(dir.path(), &[("Dockerfile", "FROM scratch\n")]);
    let evil = |name: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        // Written raw: the tar crate refuses `..` in names it is asked to write.
        let bytes = name.as_bytes();
        h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        h.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        b.append(&h, &b"x"[..]).unwrap();
        b.into_inner().unwrap()
    };
    fs::write(dir.path().join("up.tar"), evil("../../etc/passwd")).unwrap();
    fs::write(dir.path().join("wh.tar"), evil("dir/.wh.file")).unwrap();
    let ctx = reopen(dir.path());
    let err = run(&add(&["up.tar"], "/x"), &ctx, &scratch()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "ADD up.tar: archive entry \"../../etc/passwd\": it leads outside the destination"
    );
    let err = run(&add(&["wh.tar"], "/x"), &ctx, &scratch()).unwrap_err();
    assert!(matches!(err, CopyError::Whiteout(_)), "{err}");
}

#[test]
fn archive_entries_follow_the_stages_symlinks() {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(4);
    h.set_mode(0o755);
    b.append_data(&mut h, "bin/tool", &b"tool"[..]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    files(dir.path(), &[("Dockerfile", "FROM scratch\n")]);
    fs::write(dir.path().join("tools.tar"), b.into_inner().unwrap()).unwrap();
    let ctx = reopen(dir.path());
    let stage_dir = tempfile::tempdir().unwrap();
    files(stage_dir.path(), &[("usr/bin/", "")]);
    symlink("usr/bin", stage_dir.path().join("bin")).unwrap();
    let stage = DirTree::new(stage_dir.path(), "stage");
    let items = run(&add(&["tools.tar"], "/"), &ctx, &stage).unwrap();
    assert_eq!(paths(&items), ["usr", "usr/bin", "usr/bin/tool"]);
}

#[test]
fn heredocs_and_workdir_layers() {
    let stage_dir = tempfile::tempdir().unwrap();
    files(stage_dir.path(), &[("srv/", "")]);
    let stage = DirTree::new(stage_dir.path(), "stage");
    let ctx = Context::empty(b"FROM scratch\n".to_vec());
    let spec = CopySpec::new(
        Op::Copy,
        vec![CopySource::Inline {
            name: "hello.sh".into(),
            content: std::sync::Arc::from(&b"echo hi\n"[..]),
        }],
        "/srv/",
    );
    let items = run(&spec, &ctx, &stage).unwrap();
    let f = find(&items, "srv/hello.sh");
    assert_eq!(
        (f.mode, f.uid, f.data.as_slice()),
        (0o644, 0, &b"echo hi\n"[..])
    );

    let users = UserDb::parse("app:x:1500:1600::/:/bin/sh\n", "");
    let owner = workdir_owner("app", &users);
    assert_eq!(owner, (1500, 1600));
    // A user the stage does not know yet: root, as BuildKit and buildah do.
    assert_eq!(workdir_owner("ghost", &users), (0, 0));
    assert_eq!(workdir_owner("", &users), (0, 0));
    let plan = workdir_layer("/srv/app/data", owner, &stage, 0)
        .unwrap()
        .unwrap();
    let (items, _) = write(&plan);
    let got: Vec<(&str, u32, u64)> = items
        .iter()
        .map(|i| (i.path.as_str(), i.mode, i.uid))
        .collect();
    // /srv exists: it is in the layer as it is in the stage; the rest is created.
    let srv_mode = fs::metadata(stage_dir.path().join("srv"))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(
        got,
        [
            ("srv", srv_mode, 0),
            ("srv/app", 0o755, 1500),
            ("srv/app/data", 0o755, 1500)
        ]
    );
    assert!(workdir_layer("/srv", owner, &stage, 0).unwrap().is_none());
    assert!(workdir_layer("/", owner, &stage, 0).unwrap().is_none());
}

#[test]
fn conflicts_with_the_stage_are_errors() {
    let (_dir, ctx) = context(&[("d/sub/x", "x"), ("f", "f")]);
    let stage_dir = tempfile::tempdir().unwrap();
    files(
        stage_dir.path(),
        &[("dest/sub", "a file"), ("file", "a file"), ("dir/f/", "")],
    );
    let stage = DirTree::new(stage_dir.path(), "stage");
    let err = run(&copy(&["d"], "/dest"), &ctx, &stage).unwrap_err();
    assert_eq!(err.to_string(), "cannot copy to non-directory: /dest/sub");
    let err = run(&copy(&["d"], "/file"), &ctx, &stage).unwrap_err();
    assert_eq!(err.to_string(), "cannot copy to non-directory: /file");
    let err = run(&copy(&["f"], "/dir/"), &ctx, &stage).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot replace directory /dir/f with a file"
    );
}

#[test]
fn exclude_patterns_are_relative_to_each_source() {
    let (_dir, ctx) = context(&[
        ("dir1/a.png", "1"),
        ("dir1/b.txt", "2"),
        ("dir2/c.png", "3"),
        ("dir2/keep/d.png", "4"),
    ]);
    let mut spec = copy(&["dir*"], "/out/");
    spec.excludes = vec!["*.png".into(), "keep".into(), "!keep/d.png".into()];
    let items = run(&spec, &ctx, &scratch()).unwrap();
    assert_eq!(
        paths(&items),
        ["out", "out/b.txt", "out/keep", "out/keep/d.png"]
    );
}

#[test]
fn digests_ignore_mtimes_and_follow_content_and_metadata() {
    let (dir, ctx) = context(&[("src/a", "a"), ("src/b", "b")]);
    let d0 = tree_digest(&ctx, "src", None).unwrap();
    let s0 = source_digest(&ctx, "src/*", None).unwrap();
    // The same again, and after a touch: the same.
    assert_eq!(tree_digest(&reopen(dir.path()), "src", None).unwrap(), d0);
    set_mtime(&dir.path().join("src/a"), 1_000_000);
    let touched = reopen(dir.path());
    assert_eq!(tree_digest(&touched, "src", None).unwrap(), d0);
    assert_eq!(source_digest(&touched, "src/*", None).unwrap(), s0);
    // A mode change, a content change, a new file: different.
    chmod(&dir.path().join("src/a"), 0o600);
    let d1 = tree_digest(&reopen(dir.path()), "src", None).unwrap();
    assert_ne!(d1, d0);
    fs::write(dir.path().join("src/b"), "B").unwrap();
    let d2 = tree_digest(&reopen(dir.path()), "src", None).unwrap();
    assert_ne!(d2, d1);
    fs::write(dir.path().join("src/c"), "c").unwrap();
    let changed = reopen(dir.path());
    assert_ne!(tree_digest(&changed, "src", None).unwrap(), d2);
    assert_ne!(source_digest(&changed, "src/*", None).unwrap(), s0);
    // Excluded files do not count.
    let ex = dockerfile::Ignore::from_patterns(["c"]).unwrap();
    assert_eq!(tree_digest(&changed, "src", Some(&ex)).unwrap(), d2);
    // Same files elsewhere: same tree digest (names inside count, the root's path not).
    let (_other_dir, other) = context(&[("elsewhere/a", "a"), ("elsewhere/b", "b")]);
    assert_eq!(tree_digest(&other, "elsewhere", None).unwrap(), d0);
    // Owners count in a root filesystem (the context's all read as root).
    let rootfs = tempfile::tempdir().unwrap();
    files(rootfs.path(), &[("f", "x")]);
    let tree = DirTree::new(rootfs.path(), "stage");
    let before = tree_digest(&tree, "f", None).unwrap();
    std::os::unix::fs::chown(rootfs.path().join("f"), Some(1), Some(1)).unwrap();
    assert_ne!(tree_digest(&tree, "f", None).unwrap(), before);
}

#[test]
fn extended_attributes_travel_and_count() {
    let (dir, _) = context(&[("cap", "elf")]);
    let path = dir.path().join("cap");
    xattr::set(&path, "user.origin", b"ctx").unwrap();
    let ctx = reopen(dir.path());
    let before = tree_digest(&ctx, "cap", None).unwrap();
    let env = CopyEnv {
        source: &ctx,
        stage: &scratch(),
        users: &NoUsers,
    };
    let spec = copy(&["cap"], "/cap");
    let (_, tar) = write(&plan(&spec, &env).unwrap());
    let mut archive = tar::Archive::new(&tar[..]);
    let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
    let records: Vec<(String, Vec<u8>)> = entry
        .pax_extensions()
        .unwrap()
        .unwrap()
        .map(|r| {
            let r = r.unwrap();
            (r.key().unwrap().to_string(), r.value_bytes().to_vec())
        })
        .collect();
    assert_eq!(
        records,
        [("SCHILY.xattr.user.origin".to_string(), b"ctx".to_vec())]
    );
    xattr::set(&path, "user.origin", b"changed").unwrap();
    assert_ne!(
        tree_digest(&reopen(dir.path()), "cap", None).unwrap(),
        before
    );
}

#[test]
fn layers_are_deterministic() {
    let (dir, _) = context(&[("app/main", "bin"), ("app/conf/x.toml", "x = 1")]);
    fs::hard_link(dir.path().join("app/main"), dir.path().join("app/main2")).unwrap();
    symlink("main", dir.path().join("app/link")).unwrap();
    let ctx = reopen(dir.path());
    let spec = copy(&["app"], "/opt/app/");
    let env = CopyEnv {
        source: &ctx,
        stage: &EmptyTree::new("stage"),
        users: &NoUsers,
    };
    let one = plan(&spec, &env).unwrap();
    let two = plan(&spec, &env).unwrap();
    let (mut t1, mut g1, mut t2, mut g2) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let d1 = one.write(&mut t1, Some(&mut g1)).unwrap();
    let d2 = two.write(&mut t2, Some(&mut g2)).unwrap();
    assert_eq!(t1, t2);
    assert_eq!(g1, g2);
    assert_eq!(d1, d2);
    let (gz_digest, gz_size) = d1.gzip.clone().unwrap();
    assert_eq!(gz_digest, oci::Digest::of(&g1));
    assert_eq!(gz_size, g1.len() as u64);
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&g1[..])
        .read_to_end(&mut unzipped)
        .unwrap();
    assert_eq!(unzipped, t1);
    // Written to files, the same digests.
    let out = tempfile::tempdir().unwrap();
    let written = one.write_files(out.path()).unwrap();
    assert_eq!(written.digests, d1);
    assert_eq!(fs::read(written.tar.path()).unwrap(), t1);
}

#[test]
fn context_from_stdin_archive_or_dockerfile() {
    // A tar on stdin is the context, its Dockerfile and .dockerignore inside.
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("Dockerfile", &b"FROM scratch\nCOPY . /\n"[..]),
        (".dockerignore", b"secret\n"),
        ("app/main.go", b"package main"),
        ("secret", b"hunter2"),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(1000);
        b.append_data(&mut h, name, data).unwrap();
    }
    let plain = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&plain).unwrap();
    for bytes in [plain.clone(), gz.finish().unwrap()] {
        let ctx = Context::from_stdin(&bytes[..], DockerfileAt::Default).unwrap();
        assert_eq!(ctx.dockerfile(), b"FROM scratch\nCOPY . /\n");
        let listed: Vec<&str> = ctx.paths().collect();
        assert_eq!(
            listed,
            ["", ".dockerignore", "Dockerfile", "app", "app/main.go"]
        );
        // Owners from the archive read as root, like a directory's.
        assert_eq!(ctx.entry("app/main.go").unwrap().unwrap().uid, 0);
        let items = run(&copy(&["app"], "/app"), &ctx, &scratch()).unwrap();
        assert_eq!(find(&items, "app/main.go").data, b"package main");
    }
    // A pipe that hands the archive over a few bytes at a time is still an archive.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.len().min(buf.len()).min(7);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let ctx = Context::from_stdin(Trickle(&plain), DockerfileAt::Default).unwrap();
    assert!(ctx.entry("app/main.go").unwrap().is_some());
    // Anything else is the Dockerfile; the context is empty.
    let ctx = Context::from_stdin(&b"FROM scratch\n"[..], DockerfileAt::Default).unwrap();
    assert_eq!(ctx.dockerfile(), b"FROM scratch\n");
    assert!(ctx.is_empty());
    let err = run(&copy(&["x"], "/"), &ctx, &scratch()).unwrap_err();
    assert!(matches!(err, CopyError::NotFound { .. }));
}

/// A tiny HTTP/1.1 server on 127.0.0.1 for ADD <url>; stops when dropped.
struct Server {
    addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A path the test server answers: status, headers, body.
type Route = (&'static str, u16, Vec<(&'static str, String)>, Vec<u8>);

async fn serve(routes: Vec<Route>) -> Server {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mut buf = vec![0u8; 4096];
            let mut got = 0;
            while !buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                match sock.read(&mut buf[got..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
            }
            let request = String::from_utf8_lossy(&buf[..got]).to_string();
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            let (status, headers, body) = routes
                .iter()
                .find(|(p, ..)| *p == path)
                .map(|(_, s, h, b)| (*s, h.clone(), b.clone()))
                .unwrap_or((404, Vec::new(), b"not found".to_vec()));
            let mut head = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(&body).await;
            let _ = sock.shutdown().await;
        }
    });
    Server { addr, task }
}

#[tokio::test]
async fn add_downloads_urls() {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&sample_tar()).unwrap();
    let archive = gz.finish().unwrap();
    let server = serve(vec![
        (
            "/files/tool.sh",
            200,
            vec![("Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT".to_string())],
            b"#!/bin/sh\n".to_vec(),
        ),
        ("/files/bundle.tar.gz", 200, Vec::new(), archive),
        ("/", 200, Vec::new(), b"index".to_vec()),
    ])
    .await;
    let base = format!("http://{}", server.addr);
    let tmp = tempfile::tempdir().unwrap();
    let ctx = Context::empty(Vec::new());
    let stage = scratch();

    let url = |path: &str| CopySource::Url(format!("{base}{path}"));
    let mut spec = CopySpec::new(Op::Add, vec![url("/files/tool.sh")], "/usr/local/bin/");
    spec.download(tmp.path()).await.unwrap();
    let items = run(&spec, &ctx, &stage).unwrap();
    let f = find(&items, "usr/local/bin/tool.sh");
    // 0600 and the Last-Modified time, as Docker does.
    assert_eq!((f.mode, f.uid, f.mtime), (0o600, 0, 1_445_412_480));
    assert_eq!(f.data, b"#!/bin/sh\n");

    // No trailing slash: the destination is the file; --chmod replaces 0600.
    let mut spec = CopySpec::new(Op::Add, vec![url("/files/tool.sh")], "/tool");
    spec.chmod = Some("755".into());
    spec.download(tmp.path()).await.unwrap();
    let items = run(&spec, &ctx, &stage).unwrap();
    assert_eq!((items[0].path.as_str(), items[0].mode), ("tool", 0o755));

    // A URL without a path is __unnamed__; an archive is not extracted unless asked.
    let mut spec = CopySpec::new(Op::Add, vec![url("/"), url("/files/bundle.tar.gz")], "/dl/");
    spec.download(tmp.path()).await.unwrap();
    let items = run(&spec, &ctx, &stage).unwrap();
    assert_eq!(paths(&items), ["dl", "dl/__unnamed__", "dl/bundle.tar.gz"]);
    let mut spec = CopySpec::new(Op::Add, vec![url("/files/bundle.tar.gz")], "/x");
    spec.unpack = Some(true);
    spec.download(tmp.path()).await.unwrap();
    assert!(run(&spec, &ctx, &stage)
        .unwrap()
        .iter()
        .any(|i| i.path == "x/t/tt"));

    // --checksum is verified; errors name the URL.
    let mut spec = CopySpec::new(Op::Add, vec![url("/files/tool.sh")], "/t");
    spec.checksum = Some(format!("sha256:{}", "0".repeat(64)));
    let err = spec.download(tmp.path()).await.unwrap_err();
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    let mut spec = CopySpec::new(Op::Add, vec![url("/files/tool.sh")], "/t");
    spec.checksum = Some(oci::Digest::of(b"#!/bin/sh\n").to_string());
    spec.download(tmp.path()).await.unwrap();
    let mut spec = CopySpec::new(Op::Add, vec![url("/missing")], "/t");
    let err = spec.download(tmp.path()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("ADD {base}/missing: the server answered 404 Not Found")
    );
    // Planning before downloading is a mistake of the builder, said plainly.
    let spec = CopySpec::new(Op::Add, vec![url("/files/tool.sh")], "/t");
    assert!(matches!(
        run(&spec, &ctx, &stage),
        Err(CopyError::NotDownloaded(_))
    ));
    drop(server);
}

#[test]
fn unreadable_files_are_named() {
    let (dir, ctx) = context(&[("secret", "s")]);
    fs::remove_file(dir.path().join("secret")).unwrap();
    let env = CopyEnv {
        source: &ctx,
        stage: &scratch(),
        users: &NoUsers,
    };
    let spec = copy(&["secret"], "/s");
    let plan = plan(&spec, &env).unwrap();
    let err = plan.write(&mut Vec::new(), None).unwrap_err();
    assert_eq!(
        runtime::error_line(&err),
        "cannot read a file for the layer: cannot read /secret in the build context: No such file or directory (os error 2)"
    );
}

/// What a root filesystem holds, for comparing two of them: per path, its type, mode,
/// owner, link target or content, and link count (timestamps aside).
fn snapshot(root: &Path) -> std::collections::BTreeMap<String, String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for item in fs::read_dir(&dir).unwrap() {
            let path = item.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let what = if meta.is_dir() {
                stack.push(path.clone());
                "dir".to_string()
            } else if meta.file_type().is_symlink() {
                format!("link -> {}", fs::read_link(&path).unwrap().display())
            } else {
                let content = fs::read(&path).unwrap();
                format!(
                    "file {} {} nlink={}",
                    content.len(),
                    oci::Digest::of(&content).short(),
                    meta.nlink()
                )
            };
            let mode = if meta.file_type().is_symlink() {
                0o777
            } else {
                meta.mode() & 0o7777
            };
            out.insert(
                rel,
                format!("{what} {mode:o} {}:{}", meta.uid(), meta.gid()),
            );
        }
    }
    out
}

/// Builds a COPY/ADD/WORKDIR-only Dockerfile the way the builder will: each step planned
/// against the stage so far (a `StageTree` indexed from the layers already made), its layer
/// then unpacked into `rootfs` for the comparison.
fn build_ours(ctx_dir: &Path, rootfs: &Path) {
    let ctx = reopen(ctx_dir);
    let text = String::from_utf8(ctx.dockerfile().to_vec()).unwrap();
    let df = dockerfile::parse(&text).unwrap();
    let env: std::collections::HashMap<String, String> = Default::default();
    let (mut user, mut workdir) = (String::new(), String::new());
    let mut stage = StageTree::new("stage");
    for step in &df.steps {
        let users = stage.users();
        let instruction = step.instruction.expand(&df.lexer(), &env).unwrap();
        let layer = match &instruction {
            dockerfile::Instruction::From(_) => continue,
            dockerfile::Instruction::User(u) => {
                user = u.clone();
                continue;
            }
            dockerfile::Instruction::Workdir(w) => {
                workdir = if w.starts_with('/') {
                    w.clone()
                } else {
                    format!("{workdir}/{w}")
                };
                let owner = workdir_owner(&user, &users);
                match workdir_layer(&workdir, owner, &stage, 0).unwrap() {
                    Some(plan) => write(&plan).1,
                    None => continue,
                }
            }
            dockerfile::Instruction::Copy(c) => {
                let spec = CopySpec::from_copy(c, &workdir).unwrap();
                let env = CopyEnv {
                    source: &ctx,
                    stage: &stage,
                    users: &users,
                };
                write(&plan(&spec, &env).unwrap()).1
            }
            dockerfile::Instruction::Add(a) => {
                let spec = CopySpec::from_add(a, &workdir).unwrap();
                let env = CopyEnv {
                    source: &ctx,
                    stage: &stage,
                    users: &users,
                };
                write(&plan(&spec, &env).unwrap()).1
            }
            other => panic!("not a COPY/ADD/WORKDIR step: {other:?}"),
        };
        stage.apply_layer(&layer[..]).unwrap();
        let mut archive = tar::Archive::new(&layer[..]);
        archive.set_preserve_ownerships(true);
        archive.set_preserve_permissions(true);
        archive.set_overwrite(true);
        archive.unpack(rootfs).unwrap();
    }
}

fn sh(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, buildah and umoci: run scripts/test.sh"
)]
fn same_root_filesystem_as_buildah() {
    let work = tempfile::tempdir().unwrap();
    let ctx = work.path().join("ctx");
    files(
        &ctx,
        &[
            (
                "etc/passwd",
                "root:x:0:0:root:/root:/bin/sh\napp:x:1500:1600::/home/app:/bin/sh\n",
            ),
            ("etc/group", "root:x:0:\nweb:x:1700:\napp:x:1600:\n"),
            ("f.txt", "hello\n"),
            ("g.txt", "world\n"),
            ("dir/a", "a\n"),
            ("dir/sub/b", "b\n"),
            ("dir/sub/deeper/c", "c\n"),
            ("t/tt", "tt\n"),
            ("ignored/secret", "no\n"),
            ("kept.log", "log\n"),
            ("other.log", "log\n"),
        ],
    );
    chmod(&ctx.join("f.txt"), 0o640);
    chmod(&ctx.join("dir/sub"), 0o700);
    chmod(&ctx.join("dir"), 0o750);
    fs::hard_link(ctx.join("dir/a"), ctx.join("dir/a2")).unwrap();
    symlink("a", ctx.join("dir/link")).unwrap();
    symlink("f.txt", ctx.join("flink")).unwrap();
    symlink("tt", ctx.join("t/ttl")).unwrap();
    sh(std::process::Command::new("tar")
        .args(["-C"])
        .arg(&ctx)
        .args(["-czf", "t.tar.gz", "t"])
        .current_dir(&ctx));
    sh(std::process::Command::new("tar")
        .args(["-cJf", "t.tar.xz", "t"])
        .current_dir(&ctx));
    sh(std::process::Command::new("tar")
        .args(["-cf", "t.tar", "t"])
        .current_dir(&ctx));
    fs::write(ctx.join(".dockerignore"), "ignored\n*.log\n!kept.log\n").unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\n\
         COPY etc /etc\n\
         COPY --chmod=600 f.txt /p1/p2/f.txt\n\
         COPY --chown=app f.txt /c1/\n\
         COPY --chown=app:web dir /c2\n\
         COPY --chown=1234 f.txt /c3/\n\
         COPY dir /d1\n\
         COPY dir/ /d2/\n\
         COPY f.txt dir/a /multi/\n\
         COPY *.txt /glob/\n\
         COPY --chmod=640 dir /modes\n\
         COPY . /all/\n\
         COPY flink /followed\n\
         ADD t.tar.gz /a1\n\
         ADD t.tar.xz /a2/\n\
         ADD t.tar /a3\n\
         COPY t.tar.gz /plain/\n\
         USER app\n\
         WORKDIR /w1/w2\n\
         USER 0\n\
         WORKDIR /w3\n\
         WORKDIR rel\n",
    )
    .unwrap();

    let ours = work.path().join("ours");
    fs::create_dir(&ours).unwrap();
    build_ours(&ctx, &ours);

    let storage = work.path().join("storage");
    let buildah = |args: &[&str]| {
        let mut cmd = std::process::Command::new("buildah");
        cmd.arg("--storage-driver=vfs")
            .arg("--root")
            .arg(storage.join("root"))
            .arg("--runroot")
            .arg(storage.join("run"))
            .args(args);
        cmd
    };
    sh(buildah(&["bud", "--isolation", "chroot", "-q", "-t", "oracle"]).arg(&ctx));
    let layout = work.path().join("layout");
    sh(buildah(&["push", "-q", "oracle"]).arg(format!("oci:{}:latest", layout.display())));
    let bundle = work.path().join("bundle");
    sh(std::process::Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:latest", layout.display()))
        .arg(&bundle));
    let theirs = snapshot(&bundle.join("rootfs"));
    let mine = snapshot(&ours);
    let differences: Vec<String> = theirs
        .keys()
        .chain(mine.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|k| theirs.get(*k) != mine.get(*k))
        .map(|k| format!("{k}: buildah {:?}, ours {:?}", theirs.get(k), mine.get(k)))
        .collect();
    assert!(
        differences.is_empty(),
        "differences:\n{}",
        differences.join("\n")
    );
    // The comparison covered what the steps made.
    assert!(mine.len() > 60, "{mine:#?}");
    let hello = oci::Digest::of(b"hello\n");
    assert_eq!(
        mine["c1/f.txt"],
        format!("file 6 {} nlink=1 640 1500:1600", hello.short())
    );
    assert_eq!(mine["w1/w2"], "dir 755 1500:1600");
    assert!(
        mine["d1/a2"].ends_with(" nlink=2 644 0:0"),
        "{}",
        mine["d1/a2"]
    );
    assert_eq!(mine["a1/t/ttl"], "link -> tt 777 0:0");
    assert!(!mine.contains_key("all/ignored") && !mine.contains_key("all/other.log"));
    assert!(mine.contains_key("all/kept.log"));
    sh(&mut buildah(&["rmi", "-a", "-f"]));
}
