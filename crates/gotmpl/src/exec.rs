//! Runs a parsed template over a JSON document with Go's rules: `.A` on a JSON object is a map
//! lookup (a missing key is "no value", not an error), `range` over an object visits its keys
//! in sorted order, variables live to the `{{end}}` of the structure that declared them, and
//! `and`/`or` stop at the first argument that decides them.

use serde_json::Value;

use crate::funcs;
use crate::parse::{Arg, Branch, Cmd, Node, Pipe};
use crate::value::{sprint, Val};

/// An execution failure in the command at byte offset `pos` of the source.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ExecError {
    pub pos: usize,
    /// The command's source text.
    pub at: String,
    pub msg: String,
}

/// How a list of nodes ended: normally, or at a `{{break}}`/`{{continue}}` for the enclosing
/// `range`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Normal,
    Break,
    Continue,
}

pub(crate) fn execute(nodes: &[Node], data: &Value) -> Result<String, ExecError> {
    let root = Val::J(data.clone());
    let mut s = State {
        out: String::new(),
        vars: vec![("$".to_string(), root.clone())],
    };
    s.walk(&root, nodes)?;
    Ok(s.out)
}

struct State {
    out: String,
    /// Variables in scope, innermost last (a name may repeat: the last one wins).
    vars: Vec<(String, Val)>,
}

impl State {
    fn walk(&mut self, dot: &Val, nodes: &[Node]) -> Result<Flow, ExecError> {
        for node in nodes {
            let flow = match node {
                Node::Text(t) => {
                    self.out.push_str(t);
                    Flow::Normal
                }
                Node::Action(pipe) => {
                    let v = self.pipeline(dot, pipe)?;
                    if pipe.decl.is_empty() {
                        self.out.push_str(&sprint(&v));
                    }
                    Flow::Normal
                }
                Node::If(b) => self.branch(dot, b, false)?,
                Node::With(b) => self.branch(dot, b, true)?,
                Node::Range(b) => self.range(dot, b)?,
                Node::Break => Flow::Break,
                Node::Continue => Flow::Continue,
            };
            if flow != Flow::Normal {
                return Ok(flow);
            }
        }
        Ok(Flow::Normal)
    }

    /// `if` and `with`: the same but that `with` moves dot to the value.
    fn branch(&mut self, dot: &Val, b: &Branch, with: bool) -> Result<Flow, ExecError> {
        let mark = self.vars.len();
        let v = self.pipeline(dot, &b.pipe)?;
        let flow = if v.truth() {
            self.walk(if with { &v } else { dot }, &b.body)
        } else {
            self.walk(dot, &b.els)
        };
        self.vars.truncate(mark);
        flow
    }

    fn range(&mut self, dot: &Val, b: &Branch) -> Result<Flow, ExecError> {
        let mark = self.vars.len();
        let v = self.commands(dot, &b.pipe.cmds)?;
        let items: Vec<(Val, Val)> = match v {
            // Go ranges over a nil map or slice without complaint: nothing to do.
            Val::Missing | Val::J(Value::Null) => Vec::new(),
            Val::J(Value::Array(a)) => a
                .into_iter()
                .enumerate()
                .map(|(i, e)| (Val::J(i.into()), Val::J(e)))
                .collect(),
            Val::J(Value::Object(o)) => {
                let mut items: Vec<_> = o.into_iter().collect();
                items.sort_by(|a, b| a.0.cmp(&b.0));
                items
                    .into_iter()
                    .map(|(k, e)| (Val::str(k), Val::J(e)))
                    .collect()
            }
            other => {
                let cmd = b.pipe.cmds.last().map(|c| (c.pos, c.text.clone()));
                let (pos, at) = cmd.unwrap_or_default();
                return Err(ExecError {
                    pos,
                    at,
                    msg: format!("range can't iterate over {}", sprint(&other)),
                });
            }
        };
        if items.is_empty() {
            let flow = self.walk(dot, &b.els);
            self.vars.truncate(mark);
            return flow;
        }
        for (key, elem) in items {
            let inner = self.vars.len();
            match b.pipe.decl.as_slice() {
                [v] => self.vars.push((v.clone(), elem.clone())),
                [k, v] => {
                    self.vars.push((k.clone(), key));
                    self.vars.push((v.clone(), elem.clone()));
                }
                _ => {}
            }
            let flow = self.walk(&elem, &b.body);
            self.vars.truncate(inner);
            if flow? == Flow::Break {
                break;
            }
        }
        self.vars.truncate(mark);
        Ok(Flow::Normal)
    }

    /// Runs a pipeline and declares or assigns its variables.
    fn pipeline(&mut self, dot: &Val, pipe: &Pipe) -> Result<Val, ExecError> {
        let v = self.commands(dot, &pipe.cmds)?;
        for name in &pipe.decl {
            if pipe.assign {
                if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                    slot.1 = v.clone();
                }
            } else {
                self.vars.push((name.clone(), v.clone()));
            }
        }
        Ok(v)
    }

    /// Each command's result is the last argument of the next.
    fn commands(&mut self, dot: &Val, cmds: &[Cmd]) -> Result<Val, ExecError> {
        let mut v = None;
        for cmd in cmds {
            v = Some(self.command(dot, cmd, v)?);
        }
        Ok(v.unwrap_or(Val::Missing))
    }

    fn command(&mut self, dot: &Val, cmd: &Cmd, last: Option<Val>) -> Result<Val, ExecError> {
        match &cmd.args[0] {
            Arg::Func(name) => self.call(dot, cmd, name, &cmd.args[1..], last),
            first => {
                if cmd.args.len() > 1 || last.is_some() {
                    return Err(fail(
                        cmd,
                        format!("can't give argument to non-function {}", describe(first)),
                    ));
                }
                self.arg(dot, cmd, first)
            }
        }
    }

    fn arg(&mut self, dot: &Val, cmd: &Cmd, arg: &Arg) -> Result<Val, ExecError> {
        match arg {
            Arg::Dot => Ok(dot.clone()),
            Arg::Field(path) => fields(cmd, dot.clone(), path),
            Arg::Var(name, path) => {
                let v = self
                    .vars
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| fail(cmd, format!("undefined variable: {name}")))?;
                fields(cmd, v, path)
            }
            // A function name as an argument is a call without arguments.
            Arg::Func(name) => self.call(dot, cmd, name, &[], None),
            Arg::Lit(v) => Ok(Val::J(v.clone())),
            Arg::Nil => Ok(Val::J(Value::Null)),
            Arg::Pipe(pipe, path) => {
                let v = self.pipeline(dot, pipe)?;
                fields(cmd, v, path)
            }
        }
    }

    fn call(
        &mut self,
        dot: &Val,
        cmd: &Cmd,
        name: &str,
        args: &[Arg],
        last: Option<Val>,
    ) -> Result<Val, ExecError> {
        if name == "and" || name == "or" {
            // Evaluated one at a time: the first value that decides the result is returned.
            if args.is_empty() && last.is_none() {
                return Err(fail(
                    cmd,
                    format!("wrong number of args for {name}: want at least 1 got 0"),
                ));
            }
            let mut result = Val::Missing;
            for a in args {
                result = self.arg(dot, cmd, a)?;
                if result.truth() == (name == "or") {
                    return Ok(result);
                }
            }
            return Ok(last.unwrap_or(result));
        }
        let mut vals = Vec::with_capacity(args.len() + 1);
        for a in args {
            vals.push(self.arg(dot, cmd, a)?);
        }
        vals.extend(last);
        funcs::call(name, &vals).map_err(|msg| fail(cmd, msg))
    }
}

fn fail(cmd: &Cmd, msg: String) -> ExecError {
    ExecError {
        pos: cmd.pos,
        at: cmd.text.clone(),
        msg,
    }
}

/// `.A.B` on a value.
fn fields(cmd: &Cmd, mut v: Val, path: &[String]) -> Result<Val, ExecError> {
    for name in path {
        v = match v {
            Val::Missing => Val::Missing,
            Val::J(Value::Object(mut o)) => o.remove(name).map_or(Val::Missing, Val::J),
            Val::J(Value::Null) => {
                return Err(fail(
                    cmd,
                    format!("nil pointer evaluating interface {{}}.{name}"),
                ))
            }
            other => {
                return Err(fail(
                    cmd,
                    format!("can't evaluate field {name} in type {}", other.type_name()),
                ))
            }
        };
    }
    Ok(v)
}

fn describe(arg: &Arg) -> String {
    let path = |p: &[String]| p.iter().map(|f| format!(".{f}")).collect::<String>();
    match arg {
        Arg::Dot => ".".into(),
        Arg::Field(p) => path(p),
        Arg::Var(n, p) => format!("{n}{}", path(p)),
        Arg::Func(n) => n.clone(),
        Arg::Lit(v) => v.to_string(),
        Arg::Nil => "nil".into(),
        Arg::Pipe(_, p) => format!("(…){}", path(p)),
    }
}
