//! Variable substitution in instructions, as the reference's "Environment replacement"
//! section describes it.

use std::collections::BTreeMap;

use dockerfile::{parse, Command, Instruction, KeyValue, Source, Vars};

fn vars(pairs: &[(&str, &str)]) -> Vars {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Runs the ENV and ARG steps of a single-stage file the way a builder keeps its
/// environment, and returns every instruction expanded.
fn expand_all(text: &str) -> Vec<Instruction> {
    let df = parse(text).unwrap();
    let lexer = df.lexer();
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Vec::new();
    for step in &df.steps {
        let expanded = step.instruction.expand(&lexer, &env).unwrap();
        match &expanded {
            Instruction::Env(kvs) => {
                // Every pair of one ENV sees the environment from before the instruction.
                for kv in kvs {
                    env.insert(kv.key.clone(), kv.value.clone());
                }
            }
            Instruction::Arg(decls) => {
                for d in decls {
                    if let Some(v) = &d.default {
                        env.insert(d.name.clone(), v.clone());
                    }
                }
            }
            _ => {}
        }
        out.push(expanded);
    }
    out
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value.into(),
    }
}

#[test]
fn reference_example() {
    let all =
        expand_all("FROM busybox\nENV FOO=/bar\nWORKDIR ${FOO}\nADD . $FOO\nCOPY \\$FOO /quux\n");
    assert_eq!(all[2], Instruction::Workdir("/bar".into()));
    match &all[3] {
        Instruction::Add(add) => {
            assert_eq!(add.sources, [Source::Path(".".into())]);
            assert_eq!(add.dest, "/bar");
        }
        other => panic!("{other:?}"),
    }
    match &all[4] {
        Instruction::Copy(copy) => {
            assert_eq!(copy.sources, [Source::Path("$FOO".into())]);
            assert_eq!(copy.dest, "/quux");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn one_instruction_sees_the_environment_from_before_it() {
    let all = expand_all("FROM a\nENV abc=hello\nENV abc=bye def=$abc\nENV ghi=$abc\n");
    assert_eq!(
        all[2],
        Instruction::Env(vec![kv("abc", "bye"), kv("def", "hello")])
    );
    assert_eq!(all[3], Instruction::Env(vec![kv("ghi", "bye")]));
    let all = expand_all("FROM a\nENV a=1 b=$a\n");
    assert_eq!(all[1], Instruction::Env(vec![kv("a", "1"), kv("b", "")]));
}

#[test]
fn env_and_label_values_lose_their_quotes() {
    let all = expand_all(
        "FROM a\nENV MY_NAME=\"John Doe\" MY_DOG=Rex\\ The\\ Dog MY_CAT=fluffy\nENV MY_VAR my-value\n\
         ENV ONE TWO= THREE=world\nLABEL \"com.example.vendor\"=\"ACME Incorporated\" single='$MY_CAT' double=\"$MY_CAT\"\n\
         ENV name=\"value'quote space'value2\" q='a\"b' e=\"a\\\"b\"\n",
    );
    assert_eq!(
        all[1],
        Instruction::Env(vec![
            kv("MY_NAME", "John Doe"),
            kv("MY_DOG", "Rex The Dog"),
            kv("MY_CAT", "fluffy")
        ])
    );
    assert_eq!(all[2], Instruction::Env(vec![kv("MY_VAR", "my-value")]));
    assert_eq!(
        all[3],
        Instruction::Env(vec![kv("ONE", "TWO= THREE=world")])
    );
    assert_eq!(
        all[4],
        Instruction::Label(vec![
            kv("com.example.vendor", "ACME Incorporated"),
            kv("single", "$MY_CAT"),
            kv("double", "fluffy"),
        ])
    );
    assert_eq!(
        all[5],
        Instruction::Env(vec![
            kv("name", "value'quote space'value2"),
            kv("q", "a\"b"),
            kv("e", "a\"b"),
        ])
    );
}

#[test]
fn arg_defaults_expand_names_do_not() {
    let all = expand_all("FROM a\nENV base=/opt\nARG dir=${base}/app \"quoted\"=x\n");
    match &all[2] {
        Instruction::Arg(decls) => {
            assert_eq!(decls[0].name, "dir");
            assert_eq!(decls[0].default.as_deref(), Some("/opt/app"));
            assert_eq!(decls[1].name, "\"quoted\"");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn shell_and_exec_commands_are_left_alone() {
    let all = expand_all(
        "FROM a\nENV X=1\nRUN echo $X \"$X\"\nCMD [\"echo\", \"$X\"]\nENTRYPOINT echo ${X}\n\
         HEALTHCHECK CMD test $X\nSHELL [\"/bin/sh\", \"$X\"]\nMAINTAINER $X\nONBUILD WORKDIR $X\n",
    );
    assert_eq!(
        all[2],
        parse("RUN echo $X \"$X\"").unwrap().steps[0].instruction
    );
    assert_eq!(
        all[3],
        Instruction::Cmd(Command::Exec(vec!["echo".into(), "$X".into()]))
    );
    assert_eq!(
        all[4],
        Instruction::Entrypoint(Command::Shell("echo ${X}".into()))
    );
    assert_eq!(all[7], Instruction::Maintainer("$X".into()));
    match &all[8] {
        Instruction::Onbuild(on) => assert_eq!(*on.instruction, Instruction::Workdir("$X".into())),
        other => panic!("{other:?}"),
    }
    let df = parse(
        "FROM a\nRUN x\nCMD x\nENTRYPOINT x\nSHELL [\"x\"]\nHEALTHCHECK NONE\nMAINTAINER x\nONBUILD RUN x\n\
         ENV a=b\nARG a\nLABEL a=b\nEXPOSE 1\nVOLUME /a\nWORKDIR /a\nUSER a\nSTOPSIGNAL 9\nCOPY a b\nADD a b\n\
         RUN --mount=type=cache,target=/c x\n",
    )
    .unwrap();
    let expanding: Vec<&str> = df
        .steps
        .iter()
        .filter(|s| s.instruction.expands_variables())
        .map(|s| s.instruction.keyword())
        .collect();
    assert_eq!(
        expanding,
        [
            "FROM",
            "ENV",
            "ARG",
            "LABEL",
            "EXPOSE",
            "VOLUME",
            "WORKDIR",
            "USER",
            "STOPSIGNAL",
            "COPY",
            "ADD",
            "RUN"
        ]
    );
}

#[test]
fn copy_add_and_friends() {
    let all = expand_all(
        "FROM a\nENV user=app dir=/srv mode=0755 sum=sha256:00 files=\"a b\"\n\
         COPY --chown=$user:$user --chmod=${mode} [\"$files\", \"${dir}/\"]\n\
         ADD --checksum=$sum --chown=$user x.tgz $dir\n\
         USER ${user}\nVOLUME [\"$dir/data\", \"/logs\"]\nSTOPSIGNAL ${sig:-SIGTERM}\n\
         EXPOSE $port 80/tcp ${ports}\nRUN --mount=type=cache,target=$dir/cache,id=${user} make\n",
    );
    match &all[2] {
        Instruction::Copy(c) => {
            assert_eq!(c.chown.as_deref(), Some("app:app"));
            assert_eq!(c.chmod.as_deref(), Some("0755"));
            assert_eq!(c.sources, [Source::Path("a b".into())]);
            assert_eq!(c.dest, "/srv/");
        }
        other => panic!("{other:?}"),
    }
    match &all[3] {
        Instruction::Add(a) => {
            assert_eq!(a.checksum.as_deref(), Some("sha256:00"));
            assert_eq!(a.chown.as_deref(), Some("app"));
            assert_eq!(a.dest, "/srv");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(all[4], Instruction::User("app".into()));
    assert_eq!(
        all[5],
        Instruction::Volume(vec!["/srv/data".into(), "/logs".into()])
    );
    assert_eq!(all[6], Instruction::StopSignal("SIGTERM".into()));
    match &all[8] {
        Instruction::Run(run) => assert_eq!(run.mounts, ["type=cache,target=/srv/cache,id=app"]),
        other => panic!("{other:?}"),
    }
    // EXPOSE splits again after expansion; an unset variable leaves nothing.
    let df = parse("EXPOSE $port 80/tcp ${ports}").unwrap();
    let env = vars(&[("ports", "443 8443/udp")]);
    assert_eq!(
        df.steps[0].instruction.expand(&df.lexer(), &env).unwrap(),
        Instruction::Expose(vec!["80/tcp".into(), "443".into(), "8443/udp".into()])
    );
}

#[test]
fn copy_from_refuses_variables() {
    let df = parse("FROM a\nCOPY --from=$stage /x /y\n").unwrap();
    let e = df.steps[1]
        .instruction
        .expand(&df.lexer(), &vars(&[("stage", "b")]))
        .unwrap_err();
    assert!(e
        .message
        .starts_with("variable expansion is not supported for --from"));
}

#[test]
fn required_variables() {
    let df = parse("FROM a\nWORKDIR ${APP_DIR:?set APP_DIR}\n").unwrap();
    let e = df.steps[1]
        .instruction
        .expand(&df.lexer(), &vars(&[]))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "failed to process \"${APP_DIR:?set APP_DIR}\": APP_DIR: set APP_DIR"
    );
    assert_eq!(
        df.steps[1]
            .instruction
            .expand(&df.lexer(), &vars(&[("APP_DIR", "/app")]))
            .unwrap(),
        Instruction::Workdir("/app".into())
    );
}

#[test]
fn the_files_escape_character_is_used() {
    let df = parse("# escape=`\nFROM a\nENV P=c:\\dir\\ Q=`$P\nWORKDIR $P\\sub\n").unwrap();
    let env = vars(&[("P", "c:\\dir\\")]);
    assert_eq!(
        df.steps[1].instruction.expand(&df.lexer(), &env).unwrap(),
        Instruction::Env(vec![kv("P", "c:\\dir\\"), kv("Q", "$P")])
    );
    assert_eq!(
        df.steps[2].instruction.expand(&df.lexer(), &env).unwrap(),
        Instruction::Workdir("c:\\dir\\\\sub".into())
    );
}
