//! Here-documents on RUN, COPY and ADD.

use std::collections::BTreeMap;

use dockerfile::{parse, Command, Heredoc, Instruction, Source, Step};

fn steps(text: &str) -> Vec<Step> {
    parse(text).unwrap_or_else(|e| panic!("{e}")).steps
}

fn heredocs(step: &Step) -> Vec<Heredoc> {
    match &step.instruction {
        Instruction::Run(run) => run.heredocs.clone(),
        Instruction::Copy(copy) => sources(&copy.sources),
        Instruction::Add(add) => sources(&add.sources),
        Instruction::Onbuild(on) => heredocs(&Step {
            instruction: (*on.instruction).clone(),
            ..step.clone()
        }),
        _ => vec![],
    }
}

fn sources(sources: &[Source]) -> Vec<Heredoc> {
    sources
        .iter()
        .filter_map(|s| match s {
            Source::Heredoc(h) => Some(h.clone()),
            Source::Path(_) => None,
        })
        .collect()
}

/// (name, content, expand, chomp, fd)
fn summary(docs: &[Heredoc]) -> Vec<(String, String, bool, bool, u32)> {
    docs.iter()
        .map(|h| (h.name.clone(), h.content.clone(), h.expand, h.chomp, h.fd))
        .collect()
}

fn one(
    name: &str,
    content: &str,
    expand: bool,
    chomp: bool,
) -> Vec<(String, String, bool, bool, u32)> {
    vec![(name.into(), content.into(), expand, chomp, 0)]
}

#[test]
fn running_a_multi_line_script() {
    let s = steps("# syntax=docker/dockerfile:1\nFROM debian\nRUN <<EOT bash\n  set -ex\n  apt-get update\n  apt-get install -y vim\nEOT\nRUN echo done\n");
    assert_eq!(s.len(), 3);
    assert_eq!((s[1].line, s[1].end_line), (3, 7));
    assert_eq!(
        summary(&heredocs(&s[1])),
        one(
            "EOT",
            "  set -ex\n  apt-get update\n  apt-get install -y vim\n",
            true,
            false
        )
    );
    match &s[1].instruction {
        Instruction::Run(run) => {
            assert_eq!(run.command, Command::Shell("<<EOT bash".into()));
            assert_eq!(
                run.shell_script().unwrap(),
                "<<EOT bash\n  set -ex\n  apt-get update\n  apt-get install -y vim\nEOT"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s[2].line, 8);
}

#[test]
fn several_heredocs_on_one_line() {
    let s = steps("FROM alpine\nRUN <<FILE1 cat > file1 && <<FILE2 cat > file2\nI am\nfirst\nFILE1\nI am\nsecond\nFILE2\n");
    assert_eq!(
        summary(&heredocs(&s[1])),
        [
            ("FILE1".into(), "I am\nfirst\n".into(), true, false, 0),
            ("FILE2".into(), "I am\nsecond\n".into(), true, false, 0),
        ]
    );
    // Each delimiter is looked for only after the previous body.
    let s = steps("FROM a\nCOPY <<X <<Y /dest\nY\nX\nX\nY\n");
    assert_eq!(
        summary(&heredocs(&s[1])),
        [
            ("X".into(), "Y\n".into(), true, false, 0),
            ("Y".into(), "X\n".into(), true, false, 0),
        ]
    );
}

#[test]
fn creating_inline_files() {
    let s = steps("FROM alpine\nCOPY <<EOF greeting.txt\nhello world\nEOF\n");
    match &s[1].instruction {
        Instruction::Copy(copy) => {
            assert_eq!(copy.dest, "greeting.txt");
            assert_eq!(
                summary(&sources(&copy.sources)),
                one("EOF", "hello world\n", true, false)
            );
        }
        other => panic!("{other:?}"),
    }
    // Quotes in the body are content.
    let s = steps("FROM a\nCOPY <<EOF /quotes\n\"foo\"\n'bar'\nEOF\n");
    assert_eq!(
        summary(&heredocs(&s[1])),
        one("EOF", "\"foo\"\n'bar'\n", true, false)
    );
    // Heredocs mixed with paths keep their order.
    let s = steps("FROM a\nADD a.txt <<one.txt b.txt /dir/\n1\none.txt\n");
    match &s[1].instruction {
        Instruction::Add(add) => {
            assert!(matches!(&add.sources[0], Source::Path(p) if p == "a.txt"));
            assert!(
                matches!(&add.sources[1], Source::Heredoc(h) if h.name == "one.txt" && h.content == "1\n")
            );
            assert!(matches!(&add.sources[2], Source::Path(p) if p == "b.txt"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn tab_stripping() {
    let s = steps(
        "FROM a\nRUN <<INDENT\n\tfoo\n\tbar\nINDENT\nRUN <<-UNINDENT\n\tbaz\n\tquux\n\tUNINDENT\n",
    );
    assert_eq!(
        summary(&heredocs(&s[1])),
        one("INDENT", "\tfoo\n\tbar\n", true, false)
    );
    let docs = heredocs(&s[2]);
    // The body is kept as written; the delimiter line may be indented with tabs.
    assert_eq!(
        summary(&docs),
        one("UNINDENT", "\tbaz\n\tquux\n", true, true)
    );
    assert_eq!(docs[0].text(), "baz\nquux\n");
    assert_eq!(s[3..].len(), 0);
}

#[test]
fn quoting_the_delimiter_turns_expansion_off() {
    let s = steps(
        "FROM alpine\nARG FOO=bar\nCOPY <<-EOT /script.sh\n  echo \"hello ${FOO}\"\nEOT\n\
         COPY <<-\"EOT\" /script.sh\n  echo \"hello ${FOO}\"\nEOT\n\
         RUN <<'NOEXPAND'\ndon't expand $NAME\nNOEXPAND\n\
         RUN <<eo'f'\necho foo\neof\n\
         RUN <<eo\\'f\necho foo\neo'f\n\
         RUN <<'e'o\\'f\necho foo\neo'f\n\
         RUN <<'one two'\necho bar\none two\n\
         RUN <<$EOF\n$EOF\n",
    );
    let got: Vec<(String, bool)> = s[2..]
        .iter()
        .flat_map(heredocs)
        .map(|h| (h.name, h.expand))
        .collect();
    let want = [
        ("EOT", true),
        ("EOT", false),
        ("NOEXPAND", false),
        ("eof", false),
        // An escaped quote is part of the name and does not count as quoting.
        ("eo'f", true),
        ("eo'f", false),
        ("one two", false),
        ("$EOF", true),
    ];
    let want: Vec<(String, bool)> = want.iter().map(|(n, e)| (n.to_string(), *e)).collect();
    assert_eq!(got, want);
}

#[test]
fn expansion_of_copy_heredocs() {
    let df = parse(
        "FROM alpine\nCOPY <<-EOT /script.sh\n\techo \"hello ${FOO}\" \\$HOME\nEOT\nCOPY <<-\"EOT\" /raw.sh\n\techo \"hello ${FOO}\"\nEOT\n",
    )
    .unwrap();
    let env: BTreeMap<String, String> = [("FOO".to_string(), "bar".to_string())].into();
    let expanded: Vec<Heredoc> = df.steps[1..]
        .iter()
        .map(|s| s.instruction.expand(&df.lexer(), &env).unwrap())
        .flat_map(|i| match i {
            Instruction::Copy(c) => sources(&c.sources),
            _ => vec![],
        })
        .collect();
    // Quotes stay, `\$` escapes the dollar, tabs go for `<<-`.
    assert_eq!(expanded[0].content, "echo \"hello bar\" $HOME\n");
    assert!(!expanded[0].chomp);
    // A quoted delimiter: no expansion at all.
    assert_eq!(expanded[1].text(), "echo \"hello ${FOO}\"\n");
}

#[test]
fn file_descriptors_and_spacing() {
    let s = steps("FROM a\nRUN 3<<EMPTY2\nEMPTY2\nRUN <<  EOF\nEOF\nRUN <<  EOF  > foo\nEOF\nRUN <<EMPTY\nEMPTY\n");
    assert_eq!(
        summary(&heredocs(&s[1])),
        [("EMPTY2".into(), String::new(), true, false, 3)]
    );
    assert_eq!(summary(&heredocs(&s[2])), one("EOF", "", true, false));
    assert_eq!(summary(&heredocs(&s[3])), one("EOF", "", true, false));
    assert_eq!(summary(&heredocs(&s[4])), one("EMPTY", "", true, false));
}

#[test]
fn bodies_are_not_parsed() {
    let s = steps("FROM a\nRUN <<COMMENT\n# internal comment\nFOOBAR not an instruction \\\necho foo bar # trailing\nCOMMENT\nRUN --mount=type=cache,target=/foo <<MOUNT\necho hello\nMOUNT\n");
    assert_eq!(
        summary(&heredocs(&s[1])),
        one(
            "COMMENT",
            "# internal comment\nFOOBAR not an instruction \\\necho foo bar # trailing\n",
            true,
            false
        )
    );
    assert_eq!(
        summary(&heredocs(&s[2])),
        one("MOUNT", "echo hello\n", true, false)
    );
}

#[test]
fn not_heredocs() {
    // Quoted markers, JSON form, instructions that take no heredocs.
    let s = steps("FROM a\nRUN \"<<NOHEREDOC\"\nRUN [\"<<EOF\"]\nRUN echo $((1<<2))\n");
    assert!(s[1..].iter().all(|s| heredocs(s).is_empty()));
    let e = parse("FROM a\nUSER <<INVALID\nINVALID\n").unwrap_err();
    assert_eq!(e.to_string(), "Dockerfile:3: unknown instruction: INVALID");
}

#[test]
fn heredoc_errors() {
    assert_eq!(
        parse("FROM a\nRUN <<EOF\necho hi\n")
            .unwrap_err()
            .to_string(),
        "Dockerfile:2: unterminated heredoc"
    );
    assert_eq!(
        parse("FROM a\nCOPY a <<EOF\nx\nEOF\n")
            .unwrap_err()
            .to_string(),
        "Dockerfile:2: COPY cannot accept a heredoc as a destination"
    );
}

#[test]
fn heredoc_after_a_continuation_and_in_onbuild() {
    let s = steps("FROM a\nRUN \\\n  <<EOF cat\nbody\nEOF\nONBUILD RUN <<EOF\nlater\nEOF\n");
    assert_eq!(summary(&heredocs(&s[1])), one("EOF", "body\n", true, false));
    assert_eq!((s[1].line, s[1].end_line), (2, 5));
    assert_eq!(
        summary(&heredocs(&s[2])),
        one("EOF", "later\n", true, false)
    );
    match &s[2].instruction {
        Instruction::Onbuild(on) => assert_eq!(on.expression, "RUN <<EOF\nlater\nEOF"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn crlf_bodies() {
    let s = steps("FROM a\r\nRUN <<EOF\r\nline\r\nEOF\r\n");
    assert_eq!(
        summary(&heredocs(&s[1])),
        one("EOF", "line\r\n", true, false)
    );
}
