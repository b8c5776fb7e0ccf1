//! Build stages: the instructions grouped under each FROM, the global ARGs before the first
//! one, and the references between stages (`FROM stage`, `COPY --from`, `RUN --mount=from=`)
//! resolved by name or index, with cycles refused.

use std::collections::BTreeMap;

use crate::instruction::{ArgDecl, From, Instruction, Step};
use crate::lex::Lexer;
use crate::Dockerfile;

/// Variables by name: build arguments, global ARG values.
pub type Vars = BTreeMap<String, String>;

/// A stage problem: an instruction before the first FROM, a bad `--from`, a cycle, an unknown
/// target. Displays as one line, `Dockerfile:5: circular dependency detected on stage: a`
/// (without the `Dockerfile:N:` part when no line is concerned).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", line.map(|l| format!("Dockerfile:{l}: ")).unwrap_or_default())]
pub struct StageError {
    /// 1-based line of the instruction at fault, when one is.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl StageError {
    fn at(line: usize, message: impl Into<String>) -> Self {
        StageError {
            line: Some(line),
            message: message.into(),
        }
    }
}

/// A Dockerfile's stages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stages {
    /// The escape character of the file, for expansion.
    pub escape: char,
    /// The ARG instructions before the first FROM: the only variables FROM can use.
    pub global_args: Vec<Step>,
    /// The stages, in order; a stage's index is its position here.
    pub stages: Vec<Stage>,
}

/// One stage: a FROM and the instructions up to the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Position among the stages, from 0 (what `COPY --from=0` names).
    pub index: usize,
    /// The name given with `AS`, lowercase.
    pub name: Option<String>,
    /// 1-based line of the FROM.
    pub line: usize,
    /// The FROM, as written.
    pub from: From,
    /// The instructions after the FROM.
    pub steps: Vec<Step>,
}

impl Stage {
    /// The name Docker shows for the stage: its name, or `stage-N`.
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("stage-{}", self.index))
    }
}

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// `FROM scratch`: nothing.
    Scratch,
    /// An image reference, global ARGs expanded.
    Image(String),
    /// An earlier stage, by index.
    Stage(usize),
}

/// What `COPY --from` or `RUN --mount=from=` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageRef {
    /// A stage of this Dockerfile, by index.
    Stage(usize),
    /// Not a stage: an image reference (or a named build context).
    Image(String),
}

/// A reference from an instruction of a stage to another stage or an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// 1-based line of the instruction.
    pub line: usize,
    /// What it names.
    pub target: StageRef,
}

/// A stage with its references resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedStage {
    /// What the stage starts from.
    pub base: Base,
    /// `--platform`, global ARGs expanded.
    pub platform: Option<String>,
    /// The stages and images its COPY and RUN instructions read from, in order.
    pub dependencies: Vec<Dependency>,
}

/// Every stage resolved; free of cycles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// Indexed like [`Stages::stages`].
    pub stages: Vec<ResolvedStage>,
}

impl Resolution {
    /// The stages `target` needs, each after the stages it needs, ending with `target`:
    /// the order to build them in. Stages the target does not need are left out, as Docker
    /// skips them.
    pub fn build_order(&self, target: usize) -> Vec<usize> {
        let mut order = Vec::new();
        let mut seen = vec![false; self.stages.len()];
        self.visit(target, &mut seen, &mut order);
        order
    }

    fn visit(&self, index: usize, seen: &mut [bool], order: &mut Vec<usize>) {
        if index >= self.stages.len() || seen[index] {
            return;
        }
        seen[index] = true;
        for next in self.edges(index) {
            self.visit(next, seen, order);
        }
        order.push(index);
    }

    fn edges(&self, index: usize) -> impl Iterator<Item = usize> + '_ {
        let stage = &self.stages[index];
        let base = match stage.base {
            Base::Stage(i) => Some(i),
            _ => None,
        };
        base.into_iter()
            .chain(stage.dependencies.iter().filter_map(|d| match d.target {
                StageRef::Stage(i) => Some(i),
                StageRef::Image(_) => None,
            }))
    }
}

impl Dockerfile {
    /// Groups the instructions into stages. Only ARG may come before the first FROM; a
    /// Dockerfile without FROM has no stages and is an error.
    pub fn stages(&self) -> Result<Stages, StageError> {
        let mut global_args = Vec::new();
        let mut stages: Vec<Stage> = Vec::new();
        for step in &self.steps {
            match &step.instruction {
                Instruction::From(from) => stages.push(Stage {
                    index: stages.len(),
                    name: from.alias.clone(),
                    line: step.line,
                    from: from.clone(),
                    steps: Vec::new(),
                }),
                _ => match stages.last_mut() {
                    Some(stage) => stage.steps.push(step.clone()),
                    None if matches!(step.instruction, Instruction::Arg(_)) => {
                        global_args.push(step.clone())
                    }
                    None => {
                        return Err(StageError::at(
                            step.line,
                            format!(
                                "{} before the first FROM: only ARG may come before FROM",
                                step.instruction.keyword()
                            ),
                        ))
                    }
                },
            }
        }
        if stages.is_empty() {
            return Err(StageError {
                line: None,
                message: "no build stage: the Dockerfile has no FROM".into(),
            });
        }
        Ok(Stages {
            escape: self.escape,
            global_args,
            stages,
        })
    }
}

impl Stages {
    /// The stage a name or index refers to, as `COPY --from` reads it: a number is an index,
    /// anything else a stage name (case-insensitive; the last stage of that name when several
    /// have it, as in Docker).
    pub fn find(&self, name_or_index: &str) -> Option<usize> {
        match parse_index(name_or_index) {
            Some(index) => usize::try_from(index)
                .ok()
                .filter(|&i| i < self.stages.len()),
            None => self.find_name(name_or_index),
        }
    }

    fn find_name(&self, name: &str) -> Option<usize> {
        let name = name.to_lowercase();
        self.stages
            .iter()
            .rposition(|s| s.name.as_deref() == Some(name.as_str()))
    }

    /// The stage to build: the one named `target`, or the last stage when there is none.
    pub fn target(&self, target: Option<&str>) -> Result<usize, StageError> {
        match target {
            None => Ok(self.stages.len().saturating_sub(1)),
            Some(name) => self.find_name(name).ok_or_else(|| StageError {
                line: None,
                message: format!("target stage {name:?} could not be found"),
            }),
        }
    }

    /// The values of the global ARGs, for FROM lines: starting from `predefined` (the
    /// automatic platform ARGs the builder provides, e.g. `TARGETPLATFORM`), each declared ARG
    /// takes its value from `build_args` when given there, else its default expanded with the
    /// values so far; an ARG with neither stays unset. Build arguments that no global ARG
    /// declares are not included.
    pub fn global_arg_values(
        &self,
        predefined: &Vars,
        build_args: &Vars,
    ) -> Result<Vars, StageError> {
        let lexer = Lexer::new(self.escape);
        let mut values = predefined.clone();
        for step in &self.global_args {
            let Instruction::Arg(decls) = &step.instruction else {
                continue;
            };
            for ArgDecl { name, default } in decls {
                let value = match (build_args.get(name), default) {
                    (Some(value), _) => value.clone(),
                    (None, Some(default)) => lexer
                        .expand(default, &values)
                        .map_err(|e| StageError::at(step.line, e.to_string()))?,
                    (None, None) => continue,
                };
                values.insert(name.clone(), value);
            }
        }
        Ok(values)
    }

    /// Resolves every stage: FROM images and platforms expanded with `global` (from
    /// [`Stages::global_arg_values`]), `FROM name` matched against the stages before it,
    /// `COPY --from` and `RUN --mount=…,from=` matched against all stages by name or index
    /// (names that are not stages are images, as in Docker), and cycles refused.
    pub fn resolve(&self, global: &Vars) -> Result<Resolution, StageError> {
        let lexer = Lexer::new(self.escape);
        let mut resolved = Vec::with_capacity(self.stages.len());
        for stage in &self.stages {
            resolved.push(self.resolve_stage(stage, &lexer, global)?);
        }
        let resolution = Resolution { stages: resolved };
        self.check_cycles(&resolution)?;
        Ok(resolution)
    }

    fn resolve_stage(
        &self,
        stage: &Stage,
        lexer: &Lexer,
        global: &Vars,
    ) -> Result<ResolvedStage, StageError> {
        let expand = |word: &str| {
            lexer
                .expand(word, global)
                .map_err(|e| StageError::at(stage.line, e.to_string()))
        };
        let image = expand(&stage.from.image)?;
        if image.is_empty() {
            return Err(StageError::at(
                stage.line,
                format!("base name ({}) should not be blank", stage.from.image),
            ));
        }
        // Docker looks the name up exactly as written among the (lowercase) names of the
        // stages defined so far; a later stage of that name does not count.
        let earlier = self.stages[..stage.index]
            .iter()
            .rposition(|s| s.name.as_deref() == Some(image.as_str()));
        let base = match earlier {
            Some(index) => Base::Stage(index),
            None if image == "scratch" => Base::Scratch,
            None => Base::Image(image),
        };
        let platform = match &stage.from.platform {
            None => None,
            Some(raw) => {
                let platform = expand(raw)?;
                if platform.is_empty() {
                    return Err(StageError::at(
                        stage.line,
                        format!("empty platform value from expression {raw}"),
                    ));
                }
                Some(platform)
            }
        };
        let mut dependencies = Vec::new();
        for step in &stage.steps {
            match &step.instruction {
                Instruction::Copy(copy) => {
                    if let Some(from) = &copy.from {
                        let none = |_: &str| None::<String>;
                        if lexer.expand(from, &none).ok().as_deref() != Some(from.as_str()) {
                            return Err(StageError::at(
                                step.line,
                                "variable expansion is not supported for --from, define a new \
                                 stage with FROM using ARG from global scope as a workaround",
                            ));
                        }
                        let target = match parse_index(from) {
                            Some(index) => StageRef::Stage(
                                usize::try_from(index)
                                    .ok()
                                    .filter(|&i| i < self.stages.len())
                                    .ok_or_else(|| {
                                        StageError::at(
                                            step.line,
                                            format!("invalid stage index {index}"),
                                        )
                                    })?,
                            ),
                            None => self.reference(from),
                        };
                        dependencies.push(Dependency {
                            line: step.line,
                            target,
                        });
                    }
                }
                Instruction::Run(run) => {
                    for from in run.mount_sources() {
                        // `$` last is allowed: it cannot start a variable there.
                        if from.find('$').is_some_and(|i| i + 1 != from.len()) {
                            return Err(StageError::at(
                                step.line,
                                "'from' doesn't support variable expansion, define alias stage \
                                 instead",
                            ));
                        }
                        dependencies.push(Dependency {
                            line: step.line,
                            target: self.reference(from),
                        });
                    }
                }
                _ => {}
            }
        }
        Ok(ResolvedStage {
            base,
            platform,
            dependencies,
        })
    }

    fn reference(&self, name: &str) -> StageRef {
        match self.find_name(name) {
            Some(index) => StageRef::Stage(index),
            None => StageRef::Image(name.to_string()),
        }
    }

    fn check_cycles(&self, resolution: &Resolution) -> Result<(), StageError> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Active,
            Done,
        }
        /// Depth first; a reference back to a stage still being visited closes a cycle, and
        /// the line of that reference (a COPY, a RUN or a FROM) is the one reported.
        fn visit(
            index: usize,
            stages: &[Stage],
            resolution: &Resolution,
            marks: &mut [Mark],
        ) -> Result<(), usize> {
            marks[index] = Mark::Active;
            let stage = &resolution.stages[index];
            let base = match stage.base {
                Base::Stage(next) => Some((stages[index].line, next)),
                _ => None,
            };
            let deps = stage.dependencies.iter().filter_map(|d| match d.target {
                StageRef::Stage(next) => Some((d.line, next)),
                StageRef::Image(_) => None,
            });
            for (line, next) in base.into_iter().chain(deps) {
                match marks[next] {
                    Mark::Active => return Err(line),
                    Mark::New => visit(next, stages, resolution, marks)?,
                    Mark::Done => {}
                }
            }
            marks[index] = Mark::Done;
            Ok(())
        }
        let mut marks = vec![Mark::New; resolution.stages.len()];
        for (index, stage) in self.stages.iter().enumerate() {
            if marks[index] != Mark::New {
                continue;
            }
            if let Err(line) = visit(index, &self.stages, resolution, &mut marks) {
                return Err(StageError {
                    line: Some(line),
                    message: format!(
                        "circular dependency detected on stage: {}",
                        stage.display_name()
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Go's `strconv.Atoi`, which Docker uses to tell an index from a name in `--from`.
fn parse_index(text: &str) -> Option<i64> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}
