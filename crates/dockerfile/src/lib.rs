//! Dockerfiles for `container build`: parsing into typed instructions with Docker's rules
//! (parser directives, comments, line continuations with `\` or `` ` ``, heredocs, exec and
//! shell forms, flags), grouping into stages, Docker's variable expansion, and `.dockerignore`
//! matching.
//!
//! It does not build anything: running RUN in a VM, layers, the cache and the build context
//! belong to the builder. See README.md.
//!
//! ```
//! let df = dockerfile::parse("FROM alpine AS base\nRUN echo hi\n").unwrap();
//! let stages = df.stages().unwrap();
//! assert_eq!(stages.stages[0].name.as_deref(), Some("base"));
//! ```

// No unwrap on data from outside; tests may (clippy.toml).
#![warn(clippy::unwrap_used)]
// Every public item is documented: the builder is written against this API by someone else.
#![warn(missing_docs)]

mod flags;
pub mod ignore;
pub mod instruction;
pub mod lex;
mod parser;
pub mod stage;

pub use flags::parse_go_duration;
pub use ignore::{Ignore, IgnoreError};
pub use instruction::{
    Add, ArgDecl, Command, Copy, From, Healthcheck, HealthcheckCmd, Heredoc, Instruction, KeyValue,
    Onbuild, Run, Source, Step,
};
pub use lex::{expand, expand_heredoc, expand_words, ExpandError, Lexer, Lookup};
pub use stage::{
    Base, Dependency, Resolution, ResolvedStage, Stage, StageError, StageRef, Stages, Vars,
};

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The `# syntax=` directive. Recorded, not acted on: this crate is the only frontend.
    pub syntax: Option<String>,
    /// The escape character: `\`, or `` ` `` after `# escape=`` ` ``.
    pub escape: char,
    /// The `# check=` directive (build checks), recorded.
    pub check: Option<String>,
    /// The instructions, in order.
    pub steps: Vec<Step>,
    /// What Docker warns about while parsing (empty continuation lines).
    pub warnings: Vec<Warning>,
}

/// Something legal but suspect, with its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// 1-based line of the instruction concerned.
    pub line: usize,
    /// What is suspect.
    pub message: String,
}

/// A Dockerfile that cannot be parsed. Displays as one line, `Dockerfile:7: unknown
/// instruction: FOOBAR`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Dockerfile:{line}: {message}")]
pub struct ParseError {
    /// 1-based line of the instruction at fault.
    pub line: usize,
    /// What is wrong, in Docker's words where Docker has them.
    pub message: String,
}

/// Parses a Dockerfile.
///
/// Follows BuildKit's Dockerfile frontend:
/// - Parser directives (`# syntax=`, `# escape=`, `# check=`) are read only from the top,
///   before any instruction, blank line or other comment; a repeated one is an error.
/// - Lines starting with `#` (after blanks) are comments, also inside a continued
///   instruction, where they are dropped; `#` elsewhere is an ordinary character.
/// - An escape character last on a line continues the instruction on the next line; blank
///   lines inside a continuation are skipped (with a [`Warning`]); a continuation at the end of
///   the file ends the instruction.
/// - Shell-form RUN, COPY and ADD read here-documents (`<<EOF`, `<<-EOF`, `<<"EOF"`, several
///   per line) from the lines that follow.
/// - Keywords are case-insensitive; unknown ones, unknown flags and malformed arguments are
///   errors naming the instruction's first line.
///
/// Stages are not checked here (see [`Dockerfile::stages`]), so the text of an ONBUILD
/// trigger parses on its own.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    parser::parse(text)
}

impl Dockerfile {
    /// The lexer for this file's escape character, for [`Instruction::expand`].
    pub fn lexer(&self) -> Lexer {
        Lexer::new(self.escape)
    }
}
