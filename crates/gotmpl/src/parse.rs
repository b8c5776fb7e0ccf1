//! Items to a tree: control structures (`if`/`else if`/`else`, `range`, `with`, `break`,
//! `continue`), pipelines with variable declarations, commands and their operands. Undefined
//! functions and variables are refused here, as Go refuses them at parse time.

use serde_json::Value;

use crate::funcs;
use crate::lex::{Item, Kw, Tok, Token};

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Text(String),
    /// `{{pipeline}}`: printed unless it declares or assigns a variable.
    Action(Pipe),
    If(Branch),
    With(Branch),
    Range(Branch),
    Break,
    Continue,
}

/// An `if`, `with` or `range`: its pipeline, body and `else` part.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Branch {
    pub pipe: Pipe,
    pub body: Vec<Node>,
    pub els: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pipe {
    /// Declared (`:=`) or assigned (`=`) variables, `$` included.
    pub decl: Vec<String>,
    pub assign: bool,
    pub cmds: Vec<Cmd>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cmd {
    /// Byte offset in the source, for error positions.
    pub pos: usize,
    /// Its source text, for `executing "" at <…>` in errors.
    pub text: String,
    pub args: Vec<Arg>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Arg {
    Dot,
    Field(Vec<String>),
    Var(String, Vec<String>),
    Func(String),
    Lit(Value),
    Nil,
    /// `(pipeline).A.B`.
    Pipe(Box<Pipe>, Vec<String>),
}

/// A parse failure at a byte offset.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParseError {
    pub pos: usize,
    pub msg: String,
}

fn err<T>(pos: usize, msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError {
        pos,
        msg: msg.into(),
    })
}

/// What ended a list of nodes.
enum Stop {
    Eof,
    /// `{{end}}`.
    End,
    /// `{{else …}}` with the tokens after `else`.
    Else(usize, Vec<Token>),
}

pub(crate) fn parse(src: &str, items: Vec<Item>) -> Result<Vec<Node>, ParseError> {
    let mut p = Parser {
        src,
        items: items.into_iter(),
        vars: vec!["$".to_string()],
        ranges: 0,
        depth: 0,
    };
    let (nodes, stop) = p.list()?;
    match stop {
        Stop::Eof => Ok(nodes),
        Stop::End => err(src.len(), "unexpected {{end}}"),
        Stop::Else(pos, _) => err(pos, "unexpected {{else}}"),
    }
}

struct Parser<'a> {
    src: &'a str,
    items: std::vec::IntoIter<Item>,
    /// Variables in scope, innermost last.
    vars: Vec<String>,
    /// How many `range`s enclose the current position (`break`/`continue` need one).
    ranges: usize,
    /// Nesting of control structures and parentheses, bounded so that no template can
    /// exhaust the stack.
    depth: usize,
}

/// Deepest nesting a template may have: Go allows 10000, but a format string needs far less and
/// each level costs stack in the parser and the executor.
const MAX_DEPTH: usize = 100;

impl Parser<'_> {
    fn list(&mut self) -> Result<(Vec<Node>, Stop), ParseError> {
        let mut nodes = Vec::new();
        while let Some(item) = self.items.next() {
            let (pos, toks) = match item {
                Item::Text(t) => {
                    nodes.push(Node::Text(t));
                    continue;
                }
                Item::Action { pos, toks } => (pos, toks),
            };
            let Tok::Kw(kw) = toks[0].kind else {
                nodes.push(Node::Action(self.pipeline_all(pos, &toks, false)?));
                continue;
            };
            let rest = &toks[1..];
            match kw {
                Kw::End if !rest.is_empty() => return err(pos, "unexpected tokens after {{end}}"),
                Kw::End => return Ok((nodes, Stop::End)),
                Kw::Else => return Ok((nodes, Stop::Else(pos, rest.to_vec()))),
                Kw::If | Kw::With | Kw::Range => nodes.push(self.control(kw, pos, rest)?),
                Kw::Break | Kw::Continue => {
                    if self.ranges == 0 {
                        let name = if kw == Kw::Break { "break" } else { "continue" };
                        return err(pos, format!("{{{{{name}}}}} outside {{{{range}}}}"));
                    }
                    if !rest.is_empty() {
                        return err(pos, "unexpected tokens in {{break}}/{{continue}}");
                    }
                    nodes.push(if kw == Kw::Break {
                        Node::Break
                    } else {
                        Node::Continue
                    });
                }
                Kw::Define | Kw::Template | Kw::Block => {
                    return err(
                        pos,
                        "{{define}}, {{template}} and {{block}} are not supported",
                    )
                }
            }
        }
        Ok((nodes, Stop::Eof))
    }

    /// An `if`, `with` or `range` whose pipeline tokens are `toks`, through its `{{end}}`.
    fn control(&mut self, kw: Kw, pos: usize, toks: &[Token]) -> Result<Node, ParseError> {
        self.enter(pos)?;
        let node = self.control_inner(kw, pos, toks);
        self.depth -= 1;
        node
    }

    fn enter(&mut self, pos: usize) -> Result<(), ParseError> {
        if self.depth >= MAX_DEPTH {
            return err(pos, format!("max nesting depth of {MAX_DEPTH} exceeded"));
        }
        self.depth += 1;
        Ok(())
    }

    fn control_inner(&mut self, kw: Kw, pos: usize, toks: &[Token]) -> Result<Node, ParseError> {
        let mark = self.vars.len();
        if toks.is_empty() {
            return err(pos, format!("missing value for {}", keyword(kw)));
        }
        let pipe = self.pipeline_all(pos, toks, kw == Kw::Range)?;
        if kw == Kw::Range {
            self.ranges += 1;
        }
        let body = self.list();
        if kw == Kw::Range {
            self.ranges -= 1;
        }
        let (body, stop) = body?;
        let els = match stop {
            Stop::Eof => {
                return err(
                    pos,
                    format!("unexpected EOF: {} without {{{{end}}}}", keyword(kw)),
                )
            }
            Stop::End => Vec::new(),
            Stop::Else(epos, rest) if rest.is_empty() => match self.list()? {
                (els, Stop::End) => els,
                (_, Stop::Else(p, _)) => return err(p, "expected {{end}}; found {{else}}"),
                (_, Stop::Eof) => return err(epos, "unexpected EOF: {{else}} without {{end}}"),
            },
            // `{{else if …}}` and `{{else with …}}`: a nested control sharing this `{{end}}`.
            Stop::Else(epos, rest) => match rest[0].kind {
                Tok::Kw(k) if k == kw && kw != Kw::Range => {
                    vec![self.control(k, epos, &rest[1..])?]
                }
                _ => return err(epos, "unexpected tokens after {{else}}"),
            },
        };
        self.vars.truncate(mark);
        let branch = Branch { pipe, body, els };
        Ok(match kw {
            Kw::If => Node::If(branch),
            Kw::With => Node::With(branch),
            _ => Node::Range(branch),
        })
    }

    /// A pipeline that must use up `toks`.
    fn pipeline_all(
        &mut self,
        pos: usize,
        toks: &[Token],
        range: bool,
    ) -> Result<Pipe, ParseError> {
        let mut i = 0;
        let pipe = self.pipeline(pos, toks, &mut i, range)?;
        if let Some(t) = toks.get(i) {
            return err(
                t.pos,
                format!("unexpected {} in operand", self.text(t.pos, t.end)),
            );
        }
        Ok(pipe)
    }

    /// `[$x :=] command | command …` from `toks[*i]`, up to the end or a `)`.
    fn pipeline(
        &mut self,
        pos: usize,
        toks: &[Token],
        i: &mut usize,
        range: bool,
    ) -> Result<Pipe, ParseError> {
        let mut decl = Vec::new();
        let mut assign = false;
        let var_at = |j: usize| match toks.get(j).map(|t| &t.kind) {
            Some(Tok::Var(name, path)) if path.is_empty() => Some(name.clone()),
            _ => None,
        };
        let kind_at = |j: usize| toks.get(j).map(|t| &t.kind);
        if let Some(v) = var_at(*i) {
            match kind_at(*i + 1) {
                Some(Tok::Declare | Tok::Assign) => {
                    assign = kind_at(*i + 1) == Some(&Tok::Assign);
                    decl.push(v);
                    *i += 2;
                }
                Some(Tok::Comma) if range => match (var_at(*i + 2), kind_at(*i + 3)) {
                    (Some(v2), Some(Tok::Declare)) => {
                        decl.push(v);
                        decl.push(v2);
                        *i += 4;
                    }
                    _ => return err(toks[*i].pos, "too many declarations in pipeline"),
                },
                _ => {}
            }
        }
        if assign {
            if !self.vars.contains(&decl[0]) {
                return err(pos, format!("undefined variable {:?}", decl[0]));
            }
        } else {
            self.vars.extend(decl.iter().cloned());
        }
        let mut cmds = Vec::new();
        loop {
            cmds.push(self.command(pos, toks, i)?);
            match kind_at(*i) {
                Some(Tok::Pipe) => *i += 1,
                _ => break,
            }
        }
        Ok(Pipe { decl, assign, cmds })
    }

    fn command(&mut self, pos: usize, toks: &[Token], i: &mut usize) -> Result<Cmd, ParseError> {
        let start = toks.get(*i).map_or(pos, |t| t.pos);
        let mut args = Vec::new();
        let mut end = start;
        while let Some(t) = toks.get(*i) {
            if matches!(t.kind, Tok::Pipe | Tok::RParen) {
                break;
            }
            let (arg, e) = self.operand(toks, i)?;
            args.push(arg);
            end = e;
        }
        if args.is_empty() {
            return err(start, "missing value for command");
        }
        if args.len() > 1 && args[0] == Arg::Nil {
            return err(start, "nil is not a command");
        }
        Ok(Cmd {
            pos: start,
            text: self.text(start, end),
            args,
        })
    }

    /// One operand and the offset after it.
    fn operand(&mut self, toks: &[Token], i: &mut usize) -> Result<(Arg, usize), ParseError> {
        let t = &toks[*i];
        *i += 1;
        let mut end = t.end;
        let arg = match &t.kind {
            Tok::Dot => Arg::Dot,
            Tok::Field(path) => Arg::Field(path.clone()),
            Tok::Var(name, path) => {
                if !self.vars.contains(name) {
                    return err(t.pos, format!("undefined variable {name:?}"));
                }
                Arg::Var(name.clone(), path.clone())
            }
            Tok::Ident(name) => {
                if !funcs::exists(name) {
                    return err(t.pos, format!("function {name:?} not defined"));
                }
                Arg::Func(name.clone())
            }
            Tok::Str(s) => Arg::Lit(Value::String(s.clone())),
            Tok::Num(n) => Arg::Lit(Value::Number(n.clone())),
            Tok::Bool(b) => Arg::Lit(Value::Bool(*b)),
            Tok::Nil => Arg::Nil,
            Tok::LParen => {
                self.enter(t.pos)?;
                let pipe = self.pipeline(t.pos, toks, i, false);
                self.depth -= 1;
                let pipe = pipe?;
                match toks.get(*i) {
                    Some(close) if close.kind == Tok::RParen => {
                        end = close.end;
                        *i += 1;
                    }
                    _ => return err(t.pos, "unclosed left paren"),
                }
                let mut path = Vec::new();
                // Only a field written right after the `)` belongs to it.
                if let Some(Token {
                    kind: Tok::Field(p),
                    pos,
                    end: e,
                }) = toks.get(*i)
                {
                    if *pos == end {
                        path = p.clone();
                        end = *e;
                        *i += 1;
                    }
                }
                Arg::Pipe(Box::new(pipe), path)
            }
            _ => {
                return err(
                    t.pos,
                    format!("unexpected {} in operand", self.text(t.pos, t.end)),
                )
            }
        };
        Ok((arg, end))
    }

    fn text(&self, start: usize, end: usize) -> String {
        self.src.get(start..end).unwrap_or_default().to_string()
    }
}

fn keyword(kw: Kw) -> &'static str {
    match kw {
        Kw::If => "{{if}}",
        Kw::With => "{{with}}",
        _ => "{{range}}",
    }
}
