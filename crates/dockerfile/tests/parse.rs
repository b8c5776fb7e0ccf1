//! Parsing, checked against the behaviour the Dockerfile reference describes (and BuildKit
//! shows) for each construct.

use std::time::Duration;

use dockerfile::{
    parse, Add, ArgDecl, Command, Copy, From, Healthcheck, HealthcheckCmd, Instruction, KeyValue,
    Run, Source,
};

fn instructions(text: &str) -> Vec<Instruction> {
    parse(text)
        .unwrap_or_else(|e| panic!("{e}"))
        .steps
        .into_iter()
        .map(|s| s.instruction)
        .collect()
}

fn only(text: &str) -> Instruction {
    let mut all = instructions(text);
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

fn error(text: &str) -> String {
    parse(text).expect_err("should not parse").to_string()
}

fn shell(text: &str) -> Command {
    Command::Shell(text.into())
}

fn exec(args: &[&str]) -> Command {
    Command::Exec(args.iter().map(|s| s.to_string()).collect())
}

fn run_command(text: &str) -> Command {
    match only(text) {
        Instruction::Run(run) => run.command,
        other => panic!("not a RUN: {other:?}"),
    }
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value.into(),
    }
}

#[test]
fn hash_is_a_comment_only_at_line_start() {
    let all = instructions("# Comment\nRUN echo 'we are running some # of cool things'\n");
    assert_eq!(
        all,
        [Instruction::Run(Run {
            command: shell("echo 'we are running some # of cool things'"),
            heredocs: vec![],
            mounts: vec![],
            network: None,
            security: None,
            devices: vec![],
        })]
    );
}

#[test]
fn comments_inside_a_continuation_are_dropped() {
    assert_eq!(
        run_command("RUN echo hello \\\n# comment\nworld\n"),
        shell("echo hello world")
    );
    assert_eq!(
        run_command("RUN echo hello \\\n    # indented comment \\\nworld\n"),
        shell("echo hello world")
    );
}

#[test]
fn leading_whitespace_is_ignored_but_not_inside_arguments() {
    let df =
        parse("        # this is a comment-line\n    RUN echo hello\nRUN echo world\n").unwrap();
    assert_eq!(df.steps.len(), 2);
    assert_eq!(df.steps[0].line, 2);
    assert_eq!(
        df.steps[0].instruction,
        Instruction::Run(run(shell("echo hello")))
    );
    assert_eq!(
        run_command("RUN echo \"\\\n     hello\\\n     world\"\n"),
        shell("echo \"     hello     world\"")
    );
}

fn run(command: Command) -> Run {
    Run {
        command,
        heredocs: vec![],
        mounts: vec![],
        network: None,
        security: None,
        devices: vec![],
    }
}

#[test]
fn continuation_whitespace_is_kept() {
    let text = "FROM ubuntu\n\
                RUN echo hello\\\n  world\\\n  goodnight  \\\n  moon\\\n  light\\\nning\n\
                RUN echo hello  \\  \nworld\n\
                RUN echo hello \\\ngoodbye\\\nfrog\n";
    let commands: Vec<Command> = instructions(text)
        .into_iter()
        .filter_map(|i| match i {
            Instruction::Run(r) => Some(r.command),
            _ => None,
        })
        .collect();
    assert_eq!(
        commands,
        [
            shell("echo hello  world  goodnight    moon  lightning"),
            shell("echo hello  world"),
            shell("echo hello goodbyefrog"),
        ]
    );
}

#[test]
fn empty_and_lone_continuation_lines() {
    let df = parse("FROM a\nRUN foo \\\n\nbar \\\n   \nbaz\nRUN echo hi \\\n \\\n world \\\n\\\n good\\\n\\\nnight\n")
        .unwrap();
    assert_eq!(
        df.steps[1].instruction,
        Instruction::Run(run(shell("foo bar baz")))
    );
    assert_eq!((df.steps[1].line, df.steps[1].end_line), (2, 6));
    assert_eq!(
        df.steps[2].instruction,
        Instruction::Run(run(shell("echo hi   world  goodnight")))
    );
    // Blank lines in a continuation are legal but warned about, as Docker does.
    assert_eq!(df.warnings.len(), 1);
    assert_eq!(df.warnings[0].line, 2);
}

#[test]
fn continuation_at_end_of_file_ends_the_instruction() {
    assert_eq!(
        instructions("FROM alpine:3.5\n\nRUN something \\"),
        [
            Instruction::From(from("alpine:3.5")),
            Instruction::Run(run(shell("something")))
        ]
    );
    assert_eq!(run_command("RUN a \\\n"), shell("a"));
}

fn from(image: &str) -> From {
    From {
        image: image.into(),
        platform: None,
        alias: None,
    }
}

#[test]
fn escaped_escape_is_not_a_continuation() {
    let all = instructions(
        "FROM hello-world\nENV B another\\\\path\nENV C trailing\\\\backslash\\\\\nENV D not appended to C\n\
         ENV E hello\\\n\\\nworld\nENV F hello\\\n \\\nworld\n",
    );
    assert_eq!(
        all[1..],
        [
            Instruction::Env(vec![kv("B", "another\\\\path")]),
            Instruction::Env(vec![kv("C", "trailing\\\\backslash\\\\")]),
            Instruction::Env(vec![kv("D", "not appended to C")]),
            Instruction::Env(vec![kv("E", "helloworld")]),
            Instruction::Env(vec![kv("F", "hello world")]),
        ]
    );
}

#[test]
fn parser_directives_at_the_top() {
    let df = parse("# syntax=docker/dockerfile:1\n# escape=`\n\nFROM image\n").unwrap();
    assert_eq!(df.syntax.as_deref(), Some("docker/dockerfile:1"));
    assert_eq!(df.escape, '`');
    // Blanks around the key and `=` are allowed, keys are case-insensitive.
    let df = parse("#\t  SyNtAx = x/y:1 \n#check=skip=all\nFROM a\n").unwrap();
    assert_eq!(df.syntax.as_deref(), Some("x/y:1"));
    assert_eq!(df.check.as_deref(), Some("skip=all"));
}

#[test]
fn directives_are_comments_once_anything_else_was_seen() {
    // After an instruction.
    assert_eq!(parse("FROM image\n# escape=`\n").unwrap().escape, '\\');
    // After a comment that is not a directive.
    assert_eq!(
        parse("# About my dockerfile\n# escape=`\nFROM image\n")
            .unwrap()
            .escape,
        '\\'
    );
    // After an unknown directive, even a known one is a comment.
    let df = parse("# unknowndirective=value\n# syntax=value\nFROM a\n").unwrap();
    assert_eq!(df.syntax, None);
    // After a blank line.
    assert_eq!(parse("\n# escape=`\nFROM image\n").unwrap().escape, '\\');
    // A directive cannot be continued: this is a comment, then an unknown instruction.
    assert_eq!(
        error("# direc \\\ntive=value\nFROM a\n"),
        "Dockerfile:2: unknown instruction: tive=value"
    );
}

#[test]
fn a_directive_twice_is_an_error() {
    assert_eq!(
        error("# syntax=a\n# syntax=b\n\nFROM ImageName\n"),
        "Dockerfile:2: only one syntax parser directive can be used"
    );
    assert_eq!(
        error("# escape=x\nFROM a\n"),
        "Dockerfile:1: invalid escape token 'x' does not match ` or \\"
    );
}

#[test]
fn backtick_escape_for_windows_paths() {
    let text = "# escape=`\n\nFROM microsoft/nanoserver\nCOPY testfile.txt c:\\\nRUN dir c:\\\n";
    let df = parse(text).unwrap();
    assert_eq!(df.steps.len(), 3);
    match &df.steps[1].instruction {
        Instruction::Copy(copy) => {
            assert_eq!(copy.sources, [Source::Path("testfile.txt".into())]);
            assert_eq!(copy.dest, "c:\\");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        df.steps[2].instruction,
        Instruction::Run(run(shell("dir c:\\")))
    );
    // The backtick continues lines instead.
    let df = parse("# escape=`\nFROM `\n    image\nENV GOPATH `\n\\go\n").unwrap();
    assert_eq!(df.steps[0].instruction, Instruction::From(from("image")));
    assert_eq!(
        df.steps[1].instruction,
        Instruction::Env(vec![kv("GOPATH", "\\go")])
    );
}

#[test]
fn default_escape_joins_the_windows_example() {
    // With `\`, a path ending in a single backslash continues onto the next instruction.
    let df = parse("FROM microsoft/nanoserver\nCOPY testfile.txt c:\\\nRUN dir c:\\\n").unwrap();
    assert_eq!(df.steps.len(), 2);
    match &df.steps[1].instruction {
        Instruction::Copy(copy) => {
            assert_eq!(
                copy.sources,
                [
                    Source::Path("testfile.txt".into()),
                    Source::Path("c:RUN".into()),
                    Source::Path("dir".into())
                ]
            );
            assert_eq!(copy.dest, "c:");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn keywords_are_case_insensitive_and_keep_lines() {
    let df = parse("from alpine as Build\n\n\nrUn make \\\n  all\ncopy --FROM=x a b\n");
    assert_eq!(
        df.unwrap_err().to_string(),
        "Dockerfile:6: unknown flag: --FROM"
    );
    let df = parse("from alpine as Build\n\n\nrUn make \\\n  all\nCmd [\"x\"]\n").unwrap();
    let lines: Vec<(usize, usize)> = df.steps.iter().map(|s| (s.line, s.end_line)).collect();
    assert_eq!(lines, [(1, 1), (4, 5), (6, 6)]);
    assert_eq!(
        df.steps[0].instruction,
        Instruction::From(From {
            image: "alpine".into(),
            platform: None,
            alias: Some("build".into()),
        })
    );
    assert_eq!(df.steps[1].original, "rUn make   all");
}

#[test]
fn unknown_instruction_names_its_line() {
    let text = "FROM a\n\n# comment\nRUN x \\\n  y\n\nFOOBAR baz\n";
    assert_eq!(error(text), "Dockerfile:7: unknown instruction: FOOBAR");
    let e = parse(text).unwrap_err();
    assert_eq!(
        (e.line, e.message.as_str()),
        (7, "unknown instruction: FOOBAR")
    );
}

#[test]
fn empty_files_are_errors() {
    assert_eq!(error(""), "Dockerfile:1: file with no instructions");
    assert_eq!(
        error("# only\n# comments\n\n"),
        "Dockerfile:3: file with no instructions"
    );
}

#[test]
fn byte_order_mark_and_crlf() {
    let df = parse("\u{feff}# escape=`\r\nFROM a\r\nRUN echo `\r\n  hi\r\n").unwrap();
    assert_eq!(df.escape, '`');
    assert_eq!(
        df.steps[1].instruction,
        Instruction::Run(run(shell("echo   hi")))
    );
}

#[test]
fn exec_and_shell_forms() {
    assert_eq!(instructions("CMD []")[0], Instruction::Cmd(exec(&[])));
    assert_eq!(instructions("CMD [\"\"]")[0], Instruction::Cmd(exec(&[""])));
    assert_eq!(
        instructions("CMD\t[\t\"a\",\t\"b\"\t]\t")[0],
        Instruction::Cmd(exec(&["a", "b"]))
    );
    assert_eq!(
        only(r#"CMD ["abc 123", "♥", "\" \\ \/ \n \u0041"]"#),
        Instruction::Cmd(exec(&["abc 123", "♥", "\" \\ / \n A"]))
    );
    assert_eq!(
        only(r#"ENTRYPOINT ["executable", "param1", "param2"]"#),
        Instruction::Entrypoint(exec(&["executable", "param1", "param2"]))
    );
    assert_eq!(
        only("ENTRYPOINT exec top -b"),
        Instruction::Entrypoint(shell("exec top -b"))
    );
    // Invalid JSON falls back to shell form, as in Docker.
    for text in [
        r#"CMD '["echo", "JSON in a string"]'"#,
        "CMD ['echo','single quotes are not JSON']",
        r#"CMD ["echo", "unterminated""#,
        r#"CMD ["a"] trailing"#,
    ] {
        let args = text.strip_prefix("CMD ").unwrap();
        assert_eq!(only(text), Instruction::Cmd(shell(args)), "{text}");
    }
    // Valid JSON that is not all strings is an error.
    assert_eq!(
        error("RUN [\"a\", 1]"),
        "Dockerfile:1: when using JSON array syntax, arrays must be comprised of strings only"
    );
    // RUN keeps escapes for the shell.
    assert_eq!(
        run_command(r"RUN echo a\ b \$HOME"),
        shell(r"echo a\ b \$HOME")
    );
}

#[test]
fn run_flags_are_kept_raw() {
    match only(
        "RUN --mount=type=cache,target=/root/.cache --mount=type=secret,id=tok \\\n    --network=none --security=insecure --device=name=x pip install .",
    ) {
        Instruction::Run(run) => {
            assert_eq!(run.mounts, ["type=cache,target=/root/.cache", "type=secret,id=tok"]);
            assert_eq!(run.network.as_deref(), Some("none"));
            assert_eq!(run.security.as_deref(), Some("insecure"));
            assert_eq!(run.devices, ["name=x"]);
            assert_eq!(run.command, shell("pip install ."));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        error("RUN --bogus=1 true"),
        "Dockerfile:1: unknown flag: --bogus"
    );
    assert_eq!(
        error("FROM a\nRUN --network=none --network=host true"),
        "Dockerfile:2: duplicate flag specified: --network"
    );
    assert_eq!(
        error("RUN --network=none"),
        "Dockerfile:1: RUN requires at least one argument"
    );
}

#[test]
fn unknown_flags_anywhere() {
    for (text, flag) in [
        ("COPY --user=me foo /tmp/", "--user"),
        ("CMD --doit [\"a\"]", "--doit"),
        ("ENV --x a=b", "--x"),
        ("FROM --plat=x a", "--plat"),
        ("ONBUILD --x RUN y", "--x"),
        ("HEALTHCHECK --intervl=5s CMD x", "--intervl"),
        ("WORKDIR --x /a", "--x"),
    ] {
        assert_eq!(
            error(text),
            format!("Dockerfile:1: unknown flag: {flag}"),
            "{text}"
        );
    }
    // `--` ends the flags: what follows is arguments.
    match only("COPY -- --weird /tmp/") {
        Instruction::Copy(c) => assert_eq!(c.sources, [Source::Path("--weird".into())]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn copy_and_add() {
    assert_eq!(
        only("COPY --from=build --chown=55:mygroup --chmod=644 --link --parents --exclude=*.txt --exclude=x files* /mydir/ /dest/"),
        Instruction::Copy(Copy {
            sources: vec![Source::Path("files*".into()), Source::Path("/mydir/".into())],
            dest: "/dest/".into(),
            from: Some("build".into()),
            chown: Some("55:mygroup".into()),
            chmod: Some("644".into()),
            link: true,
            parents: true,
            excludes: vec!["*.txt".into(), "x".into()],
        })
    );
    // The JSON form allows spaces in paths; the other form does not know quotes.
    match only(r#"COPY ["hello world.txt", "/dst dir/"]"#) {
        Instruction::Copy(c) => {
            assert_eq!(c.sources, [Source::Path("hello world.txt".into())]);
            assert_eq!(c.dest, "/dst dir/");
        }
        other => panic!("{other:?}"),
    }
    match only(r#"COPY "a b" c"#) {
        Instruction::Copy(c) => assert_eq!(c.sources.len(), 2),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        only("ADD --keep-git-dir=true --checksum=sha256:24454f83 --unpack=false --link=false https://example.com/x.tar.gz /"),
        Instruction::Add(Add {
            sources: vec![Source::Path("https://example.com/x.tar.gz".into())],
            dest: "/".into(),
            chown: None,
            chmod: None,
            link: false,
            keep_git_dir: Some(true),
            checksum: Some("sha256:24454f83".into()),
            unpack: Some(false),
            excludes: vec![],
        })
    );
    assert_eq!(
        error("COPY onlyone"),
        "Dockerfile:1: COPY requires at least two arguments, but only one was provided. \
         Destination could not be determined"
    );
    assert_eq!(
        error("ADD --from=x a b"),
        "Dockerfile:1: unknown flag: --from"
    );
    assert_eq!(
        error("COPY --link=maybe a b"),
        "Dockerfile:1: expecting boolean value for flag --link, not: maybe"
    );
    assert_eq!(
        error("COPY --chown a b"),
        "Dockerfile:1: missing a value on flag: --chown"
    );
}

#[test]
fn env_forms() {
    let all = instructions(
        "ENV MY_NAME=\"John Doe\"\nENV MY_DOG=Rex\\ The\\ Dog\nENV MY_CAT=fluffy\n\
         ENV MY_NAME=\"John Doe\" MY_DOG=Rex\\ The\\ Dog \\\n    MY_CAT=fluffy\n\
         ENV MY_VAR my-value\nENV ONE TWO= THREE=world\nENV abc hello world\n",
    );
    assert_eq!(
        all,
        [
            Instruction::Env(vec![kv("MY_NAME", "\"John Doe\"")]),
            Instruction::Env(vec![kv("MY_DOG", "Rex\\ The\\ Dog")]),
            Instruction::Env(vec![kv("MY_CAT", "fluffy")]),
            Instruction::Env(vec![
                kv("MY_NAME", "\"John Doe\""),
                kv("MY_DOG", "Rex\\ The\\ Dog"),
                kv("MY_CAT", "fluffy"),
            ]),
            Instruction::Env(vec![kv("MY_VAR", "my-value")]),
            // The legacy form takes everything after the key as the value.
            Instruction::Env(vec![kv("ONE", "TWO= THREE=world")]),
            Instruction::Env(vec![kv("abc", "hello world")]),
        ]
    );
    let all = instructions(
        "ENV name=\"value'quote space'value2\"\nENV name='a\\'b''\nENV name=value \\\n    name2=\"value2a \\\n           value2b\"\n",
    );
    assert_eq!(
        all,
        [
            Instruction::Env(vec![kv("name", "\"value'quote space'value2\"")]),
            Instruction::Env(vec![kv("name", "'a\\'b''")]),
            Instruction::Env(vec![
                kv("name", "value"),
                kv("name2", "\"value2a            value2b\"")
            ]),
        ]
    );
    assert_eq!(
        error("ENV"),
        "Dockerfile:1: ENV requires at least one argument"
    );
    assert_eq!(
        error("ENV name"),
        "Dockerfile:1: ENV must have two arguments"
    );
    assert_eq!(
        error("ENV a=1 b"),
        "Dockerfile:1: Syntax error - can't find = in \"b\". Must be of the form: name=value"
    );
    assert_eq!(error("ENV =x"), "Dockerfile:1: ENV names can not be blank");
}

#[test]
fn labels() {
    let all = instructions(
        "LABEL \"com.example.vendor\"=\"ACME Incorporated\"\nLABEL com.example.label-with-value=\"foo\"\n\
         LABEL version=\"1.0\"\nLABEL description=\"This text illustrates \\\nthat label-values can span multiple lines.\"\n\
         LABEL multi.label1=\"value1\" multi.label2=\"value2\" other=\"value3\"\n",
    );
    assert_eq!(
        all,
        [
            Instruction::Label(vec![kv("\"com.example.vendor\"", "\"ACME Incorporated\"")]),
            Instruction::Label(vec![kv("com.example.label-with-value", "\"foo\"")]),
            Instruction::Label(vec![kv("version", "\"1.0\"")]),
            Instruction::Label(vec![kv(
                "description",
                "\"This text illustrates that label-values can span multiple lines.\""
            )]),
            Instruction::Label(vec![
                kv("multi.label1", "\"value1\""),
                kv("multi.label2", "\"value2\""),
                kv("other", "\"value3\""),
            ]),
        ]
    );
}

#[test]
fn args() {
    let decl = |name: &str, default: Option<&str>| ArgDecl {
        name: name.into(),
        default: default.map(String::from),
    };
    assert_eq!(
        instructions("ARG foo bar=baz\nFROM ubuntu\nARG abc=\"123 456\" def empty=\n"),
        [
            Instruction::Arg(vec![decl("foo", None), decl("bar", Some("baz"))]),
            Instruction::From(from("ubuntu")),
            Instruction::Arg(vec![
                decl("abc", Some("\"123 456\"")),
                decl("def", None),
                decl("empty", Some("")),
            ]),
        ]
    );
    assert_eq!(
        error("ARG"),
        "Dockerfile:1: ARG requires at least one argument"
    );
    assert_eq!(error("ARG =x"), "Dockerfile:1: ARG names can not be blank");
}

#[test]
fn from_lines() {
    assert_eq!(
        only("FROM --platform=$BUILDPLATFORM golang:1.22@sha256:abc AS Builder"),
        Instruction::From(From {
            image: "golang:1.22@sha256:abc".into(),
            platform: Some("$BUILDPLATFORM".into()),
            alias: Some("builder".into()),
        })
    );
    assert_eq!(
        error("FROM a AS 1st"),
        "Dockerfile:1: invalid name for build stage: \"1st\", name can't start with a number \
         or contain symbols"
    );
    assert_eq!(
        error("FROM a b"),
        "Dockerfile:1: FROM requires either one or three arguments"
    );
    assert_eq!(
        error("FROM"),
        "Dockerfile:1: FROM requires either one or three arguments"
    );
    assert_eq!(
        error("FROM a IS b"),
        "Dockerfile:1: FROM requires either one or three arguments"
    );
}

#[test]
fn single_argument_instructions() {
    assert_eq!(
        instructions("WORKDIR /path/to/workdir\nUSER patrick:staff\nSTOPSIGNAL SIGKILL\nMAINTAINER Sven <s@x.org>\n"),
        [
            Instruction::Workdir("/path/to/workdir".into()),
            Instruction::User("patrick:staff".into()),
            Instruction::StopSignal("SIGKILL".into()),
            Instruction::Maintainer("Sven <s@x.org>".into()),
        ]
    );
    // The whole rest of the line is the one argument.
    assert_eq!(only("WORKDIR /a b"), Instruction::Workdir("/a b".into()));
    assert_eq!(
        error("WORKDIR"),
        "Dockerfile:1: WORKDIR requires exactly one argument"
    );
    assert_eq!(
        error("USER"),
        "Dockerfile:1: USER requires exactly one argument"
    );
}

#[test]
fn expose_volume_shell() {
    assert_eq!(
        only("EXPOSE 80/tcp 80/udp\t8080"),
        Instruction::Expose(vec!["80/tcp".into(), "80/udp".into(), "8080".into()])
    );
    assert_eq!(
        error("EXPOSE"),
        "Dockerfile:1: EXPOSE requires at least one argument"
    );
    assert_eq!(
        instructions("VOLUME [\"/data\"]\nVOLUME /var/log /var/db\n"),
        [
            Instruction::Volume(vec!["/data".into()]),
            Instruction::Volume(vec!["/var/log".into(), "/var/db".into()]),
        ]
    );
    assert_eq!(
        error("VOLUME [\"/a\", \" \"]"),
        "Dockerfile:1: VOLUME specified can not be an empty string"
    );
    assert_eq!(
        only(r#"SHELL ["powershell", "-command"]"#),
        Instruction::Shell(vec!["powershell".into(), "-command".into()])
    );
    assert_eq!(
        error("SHELL /bin/bash -c"),
        "Dockerfile:1: SHELL requires the arguments to be in JSON form"
    );
    assert_eq!(
        error("SHELL []"),
        "Dockerfile:1: SHELL requires at least one argument"
    );
}

#[test]
fn healthchecks() {
    let all = instructions(
        "HEALTHCHECK NONE\nHEALTHCHECK --interval=5m --timeout=3s \\\n  CMD curl -f http://localhost/ || exit 1\n\
         HEALTHCHECK --start-period=1m30s --start-interval=500ms --retries=5 CMD [\"/check\", \"-q\"]\n\
         HEALTHCHECK --start-period=0s --interval=5s --timeout=0s --retries=0 CMD [\"foo\"]\n\
         HEALTHCHECK   cmd   a b\n",
    );
    let check = |command, interval, timeout, start_period, start_interval, retries| {
        Instruction::Healthcheck(Healthcheck::Cmd(HealthcheckCmd {
            command,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        }))
    };
    assert_eq!(
        all,
        [
            Instruction::Healthcheck(Healthcheck::None),
            check(
                shell("curl -f http://localhost/ || exit 1"),
                Some(Duration::from_secs(300)),
                Some(Duration::from_secs(3)),
                None,
                None,
                None
            ),
            check(
                exec(&["/check", "-q"]),
                None,
                None,
                Some(Duration::from_secs(90)),
                Some(Duration::from_millis(500)),
                Some(5)
            ),
            check(
                exec(&["foo"]),
                Some(Duration::from_secs(5)),
                None,
                None,
                None,
                None
            ),
            check(shell("a b"), None, None, None, None, None),
        ]
    );
    match &all[1] {
        Instruction::Healthcheck(h) => {
            assert_eq!(
                h.test(),
                ["CMD-SHELL", "curl -f http://localhost/ || exit 1"]
            )
        }
        other => panic!("{other:?}"),
    }
    for (text, message) in [
        ("HEALTHCHECK", "HEALTHCHECK requires at least one argument"),
        ("HEALTHCHECK CMD", "Missing command after HEALTHCHECK CMD"),
        ("HEALTHCHECK NONE x", "HEALTHCHECK NONE takes no arguments"),
        (
            "HEALTHCHECK CONNECT TCP 7000",
            "Unknown type \"CONNECT\" in HEALTHCHECK (try CMD)",
        ),
        (
            "HEALTHCHECK --interval=1us CMD x",
            "Interval \"interval\" cannot be less than 1ms",
        ),
        (
            "HEALTHCHECK --timeout=-1s CMD x",
            "Interval \"timeout\" cannot be less than 1ms",
        ),
        (
            "HEALTHCHECK --timeout=5 CMD x",
            "missing unit in duration \"5\"",
        ),
        (
            "HEALTHCHECK --retries=-1 CMD x",
            "--retries cannot be negative (-1)",
        ),
        (
            "HEALTHCHECK --retries=x CMD x",
            "invalid value for --retries: \"x\"",
        ),
    ] {
        assert_eq!(error(text), format!("Dockerfile:1: {message}"), "{text}");
    }
}

#[test]
fn onbuild() {
    match only("ONBUILD ADD . /app/src") {
        Instruction::Onbuild(on) => {
            assert_eq!(on.expression, "ADD . /app/src");
            assert!(matches!(*on.instruction, Instruction::Add(_)));
        }
        other => panic!("{other:?}"),
    }
    match only("onbuild run --mount=type=cache,target=/c make") {
        Instruction::Onbuild(on) => match *on.instruction {
            Instruction::Run(run) => assert_eq!(run.mounts, ["type=cache,target=/c"]),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    assert_eq!(
        error("ONBUILD ONBUILD RUN x"),
        "Dockerfile:1: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"
    );
    assert_eq!(
        error("ONBUILD from x"),
        "Dockerfile:1: FROM isn't allowed as an ONBUILD trigger"
    );
    assert_eq!(
        error("ONBUILD MAINTAINER x"),
        "Dockerfile:1: MAINTAINER isn't allowed as an ONBUILD trigger"
    );
    assert_eq!(
        error("ONBUILD"),
        "Dockerfile:1: ONBUILD requires at least one argument"
    );
    // The trigger of an image is parsed again by builds using it: on its own, without FROM.
    let again = parse("ADD . /app/src").unwrap();
    assert!(matches!(again.steps[0].instruction, Instruction::Add(_)));
}

#[test]
fn errors_are_one_line_with_the_first_line_of_the_instruction() {
    let e = error("FROM a\nCOPY \\\n  --bad=1 \\\n  a b\n");
    assert_eq!(e, "Dockerfile:2: unknown flag: --bad");
    assert!(!e.contains('\n'));
}

#[test]
fn argument_counts() {
    for keyword in ["MAINTAINER", "WORKDIR", "USER", "STOPSIGNAL"] {
        assert_eq!(
            error(keyword),
            format!("Dockerfile:1: {keyword} requires exactly one argument")
        );
    }
    for keyword in [
        "ENV",
        "LABEL",
        "ONBUILD",
        "HEALTHCHECK",
        "EXPOSE",
        "VOLUME",
        "ARG",
    ] {
        assert_eq!(
            error(keyword),
            format!("Dockerfile:1: {keyword} requires at least one argument")
        );
    }
    for keyword in ["ADD", "COPY"] {
        assert!(error(&format!("{keyword} arg1")).starts_with(&format!(
            "Dockerfile:1: {keyword} requires at least two arguments"
        )));
    }
    assert_eq!(
        error("MAINTAINER --boo joe@example.com"),
        "Dockerfile:1: unknown flag: --boo"
    );
}
