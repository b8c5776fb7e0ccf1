//! Stages, global ARGs and references between stages.

use dockerfile::{parse, Base, Dependency, Instruction, StageRef, Stages, Vars};

fn stages(text: &str) -> Stages {
    parse(text).unwrap().stages().unwrap()
}

fn vars(pairs: &[(&str, &str)]) -> Vars {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn grouping() {
    let s = stages(
        "# syntax=docker/dockerfile:1\nARG VERSION=latest\nARG OTHER\nFROM busybox:$VERSION AS Base\nARG VERSION\nRUN echo $VERSION > image_version\n\nFROM base\nCOPY --from=0 /image_version /\n",
    );
    assert_eq!(s.global_args.len(), 2);
    assert_eq!(s.stages.len(), 2);
    assert_eq!(s.stages[0].name.as_deref(), Some("base"));
    assert_eq!(s.stages[0].line, 4);
    assert_eq!(s.stages[0].steps.len(), 2);
    assert_eq!(s.stages[1].index, 1);
    assert_eq!(s.stages[1].name, None);
    assert_eq!(s.stages[1].display_name(), "stage-1");
    assert!(matches!(
        s.stages[1].steps[0].instruction,
        Instruction::Copy(_)
    ));
}

#[test]
fn only_arg_before_from() {
    let e = parse("ARG A\nRUN echo\nFROM a\n")
        .unwrap()
        .stages()
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Dockerfile:2: RUN before the first FROM: only ARG may come before FROM"
    );
    let e = parse("ARG A\n").unwrap().stages().unwrap_err();
    assert_eq!(e.to_string(), "no build stage: the Dockerfile has no FROM");
}

#[test]
fn global_args_feed_from() {
    let text = "ARG  CODE_VERSION=latest\nARG REGISTRY=docker.io/library\nARG TAG=${CODE_VERSION}-slim\nARG UNSET\n\
                FROM $REGISTRY/base:${CODE_VERSION}\nCMD  /code/run-app\n\
                FROM --platform=$BUILDPLATFORM extras:${TAG} AS x\nCMD  /code/run-extras\n";
    let s = stages(text);
    let predefined = vars(&[("BUILDPLATFORM", "linux/amd64")]);
    let global = s.global_arg_values(&predefined, &vars(&[])).unwrap();
    assert_eq!(global.get("TAG").map(String::as_str), Some("latest-slim"));
    assert!(!global.contains_key("UNSET"));
    let r = s.resolve(&global).unwrap();
    assert_eq!(
        r.stages[0].base,
        Base::Image("docker.io/library/base:latest".into())
    );
    assert_eq!(r.stages[1].base, Base::Image("extras:latest-slim".into()));
    assert_eq!(r.stages[1].platform.as_deref(), Some("linux/amd64"));

    // A build argument overrides a declared ARG and what is computed from it later.
    let global = s
        .global_arg_values(
            &predefined,
            &vars(&[("CODE_VERSION", "1.2"), ("NOT_DECLARED", "x")]),
        )
        .unwrap();
    assert_eq!(global.get("TAG").map(String::as_str), Some("1.2-slim"));
    assert!(!global.contains_key("NOT_DECLARED"));
    let r = s.resolve(&global).unwrap();
    assert_eq!(
        r.stages[0].base,
        Base::Image("docker.io/library/base:1.2".into())
    );
}

#[test]
fn blank_base_and_platform() {
    let s = stages("ARG IMG\nFROM $IMG\n");
    let e = s.resolve(&vars(&[])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Dockerfile:2: base name ($IMG) should not be blank"
    );
    let s = stages("FROM --platform=$P alpine\n");
    let e = s.resolve(&vars(&[])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Dockerfile:1: empty platform value from expression $P"
    );
}

#[test]
fn from_a_stage_scratch_or_an_image() {
    let s = stages(
        "FROM ubuntu AS base\nRUN apt-get update\nFROM base AS dev\nFROM scratch\nFROM Base\nFROM later\nFROM alpine AS later\n",
    );
    let r = s.resolve(&vars(&[])).unwrap();
    let bases: Vec<Base> = r.stages.iter().map(|s| s.base.clone()).collect();
    assert_eq!(
        bases,
        [
            Base::Image("ubuntu".into()),
            Base::Stage(0),
            Base::Scratch,
            // FROM matches stage names exactly as written, and only earlier stages.
            Base::Image("Base".into()),
            Base::Image("later".into()),
            Base::Image("alpine".into()),
        ]
    );
}

#[test]
fn copy_from_and_mounts() {
    let s = stages(
        "FROM golang AS build\nRUN go build -o /app\n\
         FROM alpine\nCOPY --from=build /app /app\nCOPY --from=0 /x /x\nCOPY --from=nginx:latest /etc/nginx/nginx.conf /nginx.conf\n\
         RUN --mount=type=bind,from=BUILD,source=/app,target=/mnt --mount=type=cache,target=/c true\n",
    );
    let r = s.resolve(&vars(&[])).unwrap();
    assert_eq!(
        r.stages[1].dependencies,
        [
            Dependency {
                line: 4,
                target: StageRef::Stage(0)
            },
            Dependency {
                line: 5,
                target: StageRef::Stage(0)
            },
            Dependency {
                line: 6,
                target: StageRef::Image("nginx:latest".into())
            },
            Dependency {
                line: 7,
                target: StageRef::Stage(0)
            },
        ]
    );
    assert_eq!(s.find("BUILD"), Some(0));
    assert_eq!(s.find("1"), Some(1));
    assert_eq!(s.find("2"), None);
    assert_eq!(s.find("nginx"), None);
}

#[test]
fn bad_references() {
    let e = stages("FROM a\nFROM b\nCOPY --from=5 /x /y\n")
        .resolve(&vars(&[]))
        .unwrap_err();
    assert_eq!(e.to_string(), "Dockerfile:3: invalid stage index 5");
    let e = stages("FROM a\nCOPY --from=-1 /x /y\n")
        .resolve(&vars(&[]))
        .unwrap_err();
    assert_eq!(e.to_string(), "Dockerfile:2: invalid stage index -1");
    let e = stages("ARG S=a\nFROM a AS a\nFROM b\nCOPY --from=${S} /x /y\n")
        .resolve(&vars(&[("S", "a")]))
        .unwrap_err();
    assert!(
        e.message
            .starts_with("variable expansion is not supported for --from"),
        "{e}"
    );
    assert_eq!(e.line, Some(4));
    let e = stages("FROM a\nRUN --mount=from=$X,target=/x true\n")
        .resolve(&vars(&[]))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Dockerfile:2: 'from' doesn't support variable expansion, define alias stage instead"
    );
}

#[test]
fn cycles() {
    let e = stages("FROM busybox AS stage0\nCOPY --from=stage0 f1 /sub/\n")
        .resolve(&vars(&[]))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Dockerfile:2: circular dependency detected on stage: stage0"
    );
    let e = stages(
        "FROM busybox AS stage0\nCOPY --from=stage2 f1 /sub/\nFROM busybox AS stage1\nCOPY --from=stage0 f2 /sub/\nFROM busybox AS stage2\nCOPY --from=stage1 f2 /sub/\n",
    )
    .resolve(&vars(&[]))
    .unwrap_err();
    assert!(
        e.message
            .starts_with("circular dependency detected on stage: "),
        "{e}"
    );
    // Through a FROM and an index, without names.
    let e = stages("FROM a\nCOPY --from=1 /x /y\nFROM 0\n").resolve(&vars(&[]));
    assert!(e.is_ok(), "FROM 0 is an image named 0, not a stage: {e:?}");
    let e = stages("FROM a AS one\nCOPY --from=1 /x /y\nFROM one\n")
        .resolve(&vars(&[]))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Dockerfile:3: circular dependency detected on stage: one"
    );
}

#[test]
fn targets_and_build_order() {
    let s = stages(
        "FROM alpine AS base\nFROM base AS deps\nRUN x\nFROM golang AS build\nCOPY --from=deps /d /d\nFROM base AS unused\nFROM scratch AS final\nCOPY --from=build /app /app\n",
    );
    let r = s.resolve(&vars(&[])).unwrap();
    let last = s.target(None).unwrap();
    assert_eq!(last, 4);
    assert_eq!(r.build_order(last), [0, 1, 2, 4]);
    assert_eq!(r.build_order(s.target(Some("DEPS")).unwrap()), [0, 1]);
    assert_eq!(
        s.target(Some("nope")).unwrap_err().to_string(),
        "target stage \"nope\" could not be found"
    );
}

#[test]
fn duplicate_names_last_one_wins_for_copy_from() {
    let s = stages("FROM a AS x\nFROM b AS x\nFROM c\nCOPY --from=x /a /b\n");
    let r = s.resolve(&vars(&[])).unwrap();
    assert_eq!(r.stages[2].dependencies[0].target, StageRef::Stage(1));
}
