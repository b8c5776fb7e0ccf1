//! `.dockerignore`, from the examples of Docker's build-context documentation and the
//! corners of its matcher.

use dockerfile::Ignore;

fn ignore(text: &str) -> Ignore {
    Ignore::parse(text).unwrap_or_else(|e| panic!("{e}"))
}

#[track_caller]
fn check(ig: &Ignore, excluded: &[&str], kept: &[&str]) {
    for path in excluded {
        assert!(ig.matches(path), "{path} should be excluded");
    }
    for path in kept {
        assert!(!ig.matches(path), "{path} should be kept");
    }
}

#[test]
fn documented_matching_example() {
    let ig = ignore("# comment\n*/temp*\n*/*/temp*\ntemp?\n");
    check(
        &ig,
        &[
            "somedir/temporary.txt",
            "somedir/temp",
            "somedir/temp/inside.txt",
            "somedir/subdir/temporary.txt",
            "tempa",
            "tempb",
        ],
        &["temp", "temporary.txt", "a/b/c/temp", "tempab", "# comment"],
    );
}

#[test]
fn leading_and_trailing_slashes_are_disregarded() {
    for pattern in [
        "/foo/bar/",
        "/foo/bar",
        "foo/bar/",
        "foo/bar",
        "./foo//bar",
        "foo/x/../bar",
    ] {
        let ig = ignore(pattern);
        check(
            &ig,
            &["foo/bar", "foo/bar/baz.txt"],
            &["foo", "foo/barn", "bar"],
        );
    }
}

#[test]
fn comments_only_in_column_one() {
    let ig = ignore("#/this/is/a/comment\n #notacomment\n");
    check(&ig, &["#notacomment"], &["this/is/a/comment"]);
}

#[test]
fn double_star() {
    let ig = ignore("**/*.go\n");
    check(&ig, &["main.go", "a/b/c.go"], &["main.rs", "go"]);
    let cases: &[(&str, &str, bool)] = &[
        ("**", "file", true),
        ("**", "dir/file", true),
        ("**/", "file", true),
        ("**/**", "dir/file", true),
        ("dir/**", "dir/file", true),
        ("dir/**", "dir/dir2/file", true),
        ("**/dir", "dir", true),
        ("**/dir", "dir/file", true),
        ("**/dir2/*", "dir/dir2/file", true),
        ("**/dir2/**", "dir/dir2/dir3/file", true),
        ("**file", "file", true),
        ("**file", "dir/dir/file", true),
        ("**/file*.txt", "dir/dir/file.txt", true),
        ("**/**/*.txt2", "dir/dir/file.txt", false),
        ("**/*.txt", "file.txt", true),
        ("a**/*.txt", "a/dir/dir/file.txt", true),
        ("a/*.txt", "a/dir/file.txt", false),
        ("a/*.txt**", "a/file.txt", true),
        ("**/foo/bar", "foo/bar", true),
        ("**/foo/bar", "dir/dir2/foo/bar", true),
        ("abc/**", "abc", false),
        ("abc/**", "abc/def/ghi", true),
        ("**/.foo", ".foo", true),
        ("**/.foo", "bar.foo", false),
    ];
    for &(pattern, path, want) in cases {
        assert_eq!(ignore(pattern).matches(path), want, "{pattern} vs {path}");
    }
}

#[test]
fn filepath_match_syntax() {
    let cases: &[(&str, &str, bool)] = &[
        ("a[b-d]e", "ace", true),
        ("a[b-d]e", "aae", false),
        ("a[^b-d]e", "aze", true),
        (".*", ".foo", true),
        (".*", "foo", false),
        ("abc.def", "abcZdef", false),
        ("abc?def", "abcZdef", true),
        ("abc?def", "abcdef", false),
        ("a\\\\", "a\\", true),
        ("a\\*b", "a*b", true),
        ("a\\*b", "ab", false),
        ("a?b", "a☺b", true),
        ("a???b", "a☺b", false),
        ("[a-ζ]*", "α", true),
        ("*[a-ζ]", "A", false),
        ("a?b", "a/b", false),
        ("a*b", "a/b", false),
        ("a*/b", "abc/b", true),
        ("a*/b", "a/c/b", false),
        ("a*b?c*x", "abxbbxdbxebxczzx", true),
        ("a*b?c*x", "abxbbxdbxebxczzy", false),
        ("[\\]a]", "]", true),
        ("[\\-]", "-", true),
        ("a(b)c/def", "a(b)c/def", true),
        ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
        (
            "dist/*.whl",
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            true,
        ),
        // A pattern matching a directory takes everything under it.
        ("a*", "ab/c", true),
    ];
    for &(pattern, path, want) in cases {
        assert_eq!(ignore(pattern).matches(path), want, "{pattern} vs {path}");
    }
}

#[test]
fn exceptions_last_match_wins() {
    let ig = ignore("*.md\n!README.md\n");
    check(
        &ig,
        &["CHANGES.md"],
        &["README.md", "docs/guide.md", "main.go"],
    );

    let ig = ignore("*.md\n!README*.md\nREADME-secret.md\n");
    check(
        &ig,
        &["CHANGES.md", "README-secret.md"],
        &["README.md", "README-x.md"],
    );

    let ig = ignore("*.md\nREADME-secret.md\n!README*.md\n");
    check(&ig, &["CHANGES.md"], &["README-secret.md", "README.md"]);

    // Re-including a file inside an excluded directory.
    for text in [
        "docs\n!docs/README.md\n",
        "docs/\n!docs/README.md\n",
        "docs/*\n!docs/README.md\n",
    ] {
        check(&ignore(text), &["docs/other.md"], &["docs/README.md"]);
    }
    // An exception before the exclusion has no effect.
    check(&ignore("!fileutils.go\n*.go\n"), &["fileutils.go"], &[]);

    let ig = ignore("**\n!util/docker/web\n");
    check(
        &ig,
        &["util", "util/x"],
        &["util/docker/web", "util/docker/web/foo"],
    );
    let ig = ignore("**\n!util/docker/web\nutil/docker/web/foo\n");
    check(&ig, &["util/docker/web/foo"], &["util/docker/web/bar"]);
}

#[test]
fn the_root_and_dot_are_never_excluded() {
    let ig = ignore(".\n*.go\n");
    check(&ig, &["a.go"], &[".", "", "/", "src"]);
    // Paths are taken relative to the root and cleaned.
    check(&ig, &["/a.go", "./a.go", "x/../b.go"], &[]);
}

#[test]
fn whitespace_and_crlf() {
    let ig = ignore("\u{feff}docs\r\n  !docs/README.md  \r\n\r\n   \r\nconfig\r\n");
    check(&ig, &["docs/a", "config"], &["docs/README.md"]);
    let patterns: Vec<(String, bool)> = ig.patterns().map(|(p, e)| (p.to_string(), e)).collect();
    assert_eq!(
        patterns,
        [
            ("docs".to_string(), false),
            ("docs/README.md".to_string(), true),
            ("config".to_string(), false)
        ]
    );
}

#[test]
fn bad_patterns_are_errors() {
    assert_eq!(
        Ignore::parse("ok\n!\n").unwrap_err().to_string(),
        ".dockerignore:2: illegal exclusion pattern: \"!\""
    );
    let e = Ignore::parse("a\nb\n[\n").unwrap_err();
    assert_eq!(e.line, 3);
    assert!(Ignore::parse("x\\").is_err());
    assert!(Ignore::parse("[a-]").is_err());
}

#[test]
fn skipping_excluded_directories() {
    // No exceptions: any excluded directory can be skipped whole.
    let ig = ignore("node_modules\n");
    assert!(ig.matches("node_modules"));
    assert!(!ig.may_reinclude_under("node_modules"));

    // A literal exception inside the directory: it must be entered; elsewhere it need not.
    let ig = ignore("*\n!src/keep.txt\n");
    assert!(ig.may_reinclude_under("src"));
    assert!(!ig.may_reinclude_under("target"));
    assert!(ig.matches("src/other") && !ig.matches("src/keep.txt"));

    // Trailing `/**` or `/*` still count as literal.
    let ig = ignore("build\n!build/out/**\n");
    assert!(ig.may_reinclude_under("build"));
    assert!(ig.may_reinclude_under("build/out"));
    assert!(!ig.may_reinclude_under("buildx"));

    // An exception with wildcards could match anywhere.
    let ig = ignore("vendor\n!**/*.go\n");
    assert!(ig.may_reinclude_under("vendor"));
    assert!(!ig.matches("vendor/x/a.go"));
}

#[test]
fn copy_exclude_patterns() {
    let ig = Ignore::from_patterns(["*.txt", "!keep.txt", "  "]).unwrap();
    check(&ig, &["a.txt"], &["keep.txt", "a.md"]);
    assert!(!ig.is_empty());
    assert!(Ignore::from_patterns(Vec::<String>::new())
        .unwrap()
        .is_empty());
    assert_eq!(Ignore::from_patterns(["a", "!"]).unwrap_err().line, 2);
}
