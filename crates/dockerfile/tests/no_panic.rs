//! Arbitrary input never panics: Dockerfiles and `.dockerignore` files come from users.

use std::collections::BTreeMap;

use dockerfile::{expand, expand_words, parse, Ignore, Lexer};
use proptest::prelude::*;

/// Pieces that reach the interesting paths (directives, continuations, heredocs, JSON, flags,
/// expansions) far more often than uniform characters would.
fn dockerfile_text() -> impl Strategy<Value = String> {
    const PIECES: &[&str] = &[
        "FROM ",
        "RUN ",
        "COPY ",
        "ADD ",
        "ONBUILD ",
        "HEALTHCHECK ",
        "CMD ",
        "ENV ",
        "ARG ",
        "LABEL ",
        "SHELL ",
        "EXPOSE ",
        "VOLUME ",
        " AS ",
        "<<EOF",
        "<<-'E'",
        "EOF",
        "\tE",
        "\n",
        "\r\n",
        "\\\n",
        "`\n",
        "# escape=`\n",
        "# syntax=x\n",
        "#",
        "\\",
        "`",
        "\"",
        "'",
        "$",
        "${",
        "}",
        ":-",
        ":?",
        "##",
        "/",
        "[",
        "]",
        "[\"a\", \"b\"]",
        ",",
        "--mount=from=",
        "--from=",
        "--interval=",
        "--",
        "=",
        " ",
        "0",
        "a",
        "é",
        "\u{feff}",
    ];
    let piece = prop_oneof![
        9 => proptest::sample::select(PIECES).prop_map(String::from),
        1 => any::<char>().prop_map(String::from),
    ];
    proptest::collection::vec(piece, 0..60).prop_map(|pieces| pieces.concat())
}

fn exercise(text: &str) {
    let Ok(df) = parse(text) else { return };
    let line_count = text.split_inclusive('\n').count().max(1);
    let mut previous = 0;
    for step in &df.steps {
        assert!(step.line > previous, "lines go forward");
        assert!(step.line <= step.end_line && step.end_line <= line_count);
        previous = step.end_line;
    }
    let env: BTreeMap<String, String> = [("a".to_string(), "x y".to_string())].into();
    for step in &df.steps {
        let _ = step.instruction.expand(&df.lexer(), &env);
    }
    if let Ok(stages) = df.stages() {
        if let Ok(global) = stages.global_arg_values(&BTreeMap::new(), &BTreeMap::new()) {
            if let Ok(resolution) = stages.resolve(&global) {
                for index in 0..stages.stages.len() {
                    let order = resolution.build_order(index);
                    assert_eq!(order.last(), Some(&index));
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parse_never_panics(text in dockerfile_text()) {
        exercise(&text);
    }

    #[test]
    fn parse_never_panics_on_any_string(text in "\\PC*") {
        exercise(&text);
    }

    #[test]
    fn expansion_never_panics(word in dockerfile_text()) {
        let env: BTreeMap<String, String> = [("a".to_string(), "1 2".to_string())].into();
        let _ = expand(&word, &env);
        let _ = expand_words(&word, &env);
        let _ = Lexer::new('`').expand(&word, &env);
        let _ = dockerfile::expand_heredoc(&word, &env);
    }

    #[test]
    fn dockerignore_never_panics(
        text in proptest::collection::vec(
            proptest::sample::select(&[
                "*", "**", "?", "[", "]", "^", "-", "\\", "!", "/", ".", "..", "\n", "#", " ", "a",
                "é",
            ][..]),
            0..30,
        ).prop_map(|p| p.concat()),
        path in "[a-c/.]{0,12}",
    ) {
        if let Ok(ig) = Ignore::parse(&text) {
            let _ = ig.matches(&path);
            let _ = ig.may_reinclude_under(&path);
        }
    }
}
