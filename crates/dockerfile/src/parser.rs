//! Text to instructions, in Docker's two passes: lines are joined into logical instructions
//! (directives, comments, continuations, heredoc bodies), then each is read by the rules of
//! its keyword.

use crate::flags::{Flags, Kind};
use crate::instruction::{
    Add, ArgDecl, Command, Copy, From, Healthcheck, HealthcheckCmd, Heredoc, Instruction, KeyValue,
    Onbuild, Run, Source, Step,
};
use crate::lex::{Lexer, Options};
use crate::{Dockerfile, ParseError, Warning};

/// An instruction after the first pass: where it is, its keyword, flags and argument text.
struct RawNode {
    line: usize,
    end_line: usize,
    original: String,
    keyword: String,
    flags: Vec<String>,
    args: String,
    heredocs: Vec<Heredoc>,
}

pub(crate) fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    // Two passes as in BuildKit, so the same error wins when a file has several: a syntax
    // error anywhere (an unterminated heredoc) before a bad instruction earlier in the file.
    let mut first = FirstPass::default();
    let nodes = first.run(text)?;
    let steps = nodes
        .into_iter()
        .map(|node| {
            let instruction = instruction(
                &node.keyword,
                &node.flags,
                &node.args,
                &node.heredocs,
                first.directives.escape,
            )
            .map_err(|message| ParseError {
                line: node.line,
                message,
            })?;
            Ok(Step {
                line: node.line,
                end_line: node.end_line,
                original: node.original,
                instruction,
            })
        })
        .collect::<Result<Vec<_>, ParseError>>()?;
    Ok(Dockerfile {
        syntax: first.directives.syntax,
        escape: first.directives.escape,
        check: first.directives.check,
        steps,
        warnings: first.warnings,
    })
}

struct Directives {
    syntax: Option<String>,
    escape: char,
    check: Option<String>,
    /// Parser directives are only looked for until the first line that is not one.
    done: bool,
    seen: Vec<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            syntax: None,
            escape: '\\',
            check: None,
            done: false,
            seen: Vec::new(),
        }
    }
}

impl Directives {
    /// Looks at a line (newline removed) while directives may still appear.
    fn consider(&mut self, line: &str) -> Result<(), String> {
        if self.done {
            return Ok(());
        }
        let Some((key, value)) = directive(line) else {
            // A blank line, an instruction or a comment that is not a directive ends them.
            self.done = true;
            return Ok(());
        };
        let key = key.to_ascii_lowercase();
        if !matches!(key.as_str(), "syntax" | "escape" | "check") {
            self.done = true;
            return Ok(());
        }
        if self.seen.contains(&key) {
            return Err(format!("only one {key} parser directive can be used"));
        }
        self.seen.push(key.clone());
        match key.as_str() {
            "escape" => {
                self.escape = match value {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        return Err(format!(
                            "invalid escape token '{value}' does not match ` or \\"
                        ))
                    }
                }
            }
            "syntax" => self.syntax = Some(value.to_string()),
            _ => self.check = Some(value.to_string()),
        }
        Ok(())
    }
}

/// `#key=value`, blanks allowed around the key and `=`, as Docker's directive pattern reads it.
fn directive(line: &str) -> Option<(&str, &str)> {
    let is_blank = |c: char| matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ');
    let rest = line.strip_prefix('#')?.trim_start();
    let key_len = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(rest.len(), |(i, _)| i);
    if key_len == 0 {
        return None;
    }
    let (key, rest) = rest.split_at(key_len);
    let after_eq = rest.trim_start_matches(is_blank).strip_prefix('=')?;
    let value = after_eq.trim_start_matches(is_blank);
    let value = if value.is_empty() {
        // The pattern needs one character of value; blanks alone give their last one.
        let last = after_eq.chars().last()?;
        &after_eq[after_eq.len() - last.len_utf8()..]
    } else {
        value.trim_end_matches(is_blank)
    };
    Some((key, value))
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

/// Removes a line continuation: the escape character last on the line (blanks may follow),
/// not itself escaped. Returns the text before it and whether the instruction ends here.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    if let Some(before) = trimmed.strip_suffix(escape) {
        // Docker's pattern cannot tell `\\\` from `\\`: any escape before the last one
        // means "not a continuation", which this keeps.
        if before.is_empty() || !before.ends_with(escape) {
            return (before, false);
        }
    }
    (line, true)
}

#[derive(Default)]
struct FirstPass {
    directives: Directives,
    warnings: Vec<Warning>,
}

impl FirstPass {
    /// The line with its newline removed (and, for the first line of an instruction, its
    /// leading blanks), after checking it for a directive; comment lines come back empty.
    fn process_line<'a>(
        &mut self,
        raw: &'a str,
        strip_left: bool,
        number: usize,
    ) -> Result<&'a str, ParseError> {
        let mut line = trim_newline(raw);
        if strip_left {
            line = line.trim_start();
        }
        self.directives
            .consider(line)
            .map_err(|message| ParseError {
                line: number,
                message,
            })?;
        Ok(if is_comment(line) { "" } else { line })
    }

    fn run(&mut self, text: &str) -> Result<Vec<RawNode>, ParseError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        let mut next = 0;
        let mut current = 0;
        let mut nodes = Vec::new();
        while next < lines.len() {
            let raw = lines[next];
            next += 1;
            let line = self.process_line(raw, true, current + 1)?;
            current += 1;
            let start = current;
            let (part, mut ended) = trim_continuation(line, self.directives.escape);
            if ended && part.is_empty() {
                continue;
            }
            let mut logical = part.to_string();
            let mut empty_continuation = false;
            while !ended && next < lines.len() {
                let raw = lines[next];
                next += 1;
                let line = self.process_line(raw, false, current + 1)?;
                current += 1;
                // Comment lines inside a continued instruction vanish, even indented ones.
                if is_comment(raw) {
                    continue;
                }
                if line.trim_start().is_empty() {
                    empty_continuation = true;
                    continue;
                }
                let (part, end) = trim_continuation(line, self.directives.escape);
                ended = end;
                logical.push_str(part);
            }
            if empty_continuation {
                self.warnings.push(Warning {
                    line: start,
                    message: format!("empty continuation line found in: {logical}"),
                });
            }

            let (keyword, flags, args) = split_command(&logical, self.directives.escape);
            let error = |message| ParseError {
                line: start,
                message,
            };
            let mut heredocs = Vec::new();
            if can_contain_heredoc(&keyword, &args, self.directives.escape).map_err(error)?
                && logical.contains("<<")
            {
                for mut doc in heredocs_from_line(&logical).map_err(error)? {
                    let mut terminated = false;
                    while next < lines.len() {
                        let raw = lines[next];
                        next += 1;
                        current += 1;
                        let mut candidate = trim_newline(raw);
                        if doc.chomp {
                            candidate = candidate.trim_start_matches('\t');
                        }
                        if candidate == doc.name {
                            terminated = true;
                            break;
                        }
                        doc.content.push_str(raw);
                    }
                    if !terminated {
                        return Err(error("unterminated heredoc".into()));
                    }
                    heredocs.push(doc);
                }
            }
            nodes.push(RawNode {
                line: start,
                end_line: current,
                original: logical.trim().to_string(),
                keyword,
                flags,
                args,
                heredocs,
            });
        }
        if nodes.is_empty() {
            return Err(ParseError {
                line: current.max(1),
                message: "file with no instructions".into(),
            });
        }
        Ok(nodes)
    }
}

fn is_split_blank(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

/// Splits at runs of blanks, as Docker does for FROM, EXPOSE and the non-JSON forms of COPY,
/// ADD and VOLUME: quotes mean nothing there.
fn split_blanks(s: &str) -> Vec<String> {
    s.split(is_split_blank)
        .filter(|w| !w.is_empty())
        .map(String::from)
        .collect()
}

/// The keyword, the leading `--flags` (quotes and escapes in them resolved) and the rest.
fn split_command(line: &str, escape: char) -> (String, Vec<String>, String) {
    let line = line.trim();
    let Some(at) = line.find(is_split_blank) else {
        return (line.to_string(), Vec::new(), String::new());
    };
    let keyword = &line[..at];
    let rest = line[at..].trim_start_matches(is_split_blank);
    let (args, flags) = extract_flags(rest, escape);
    (keyword.to_string(), flags, args.trim().to_string())
}

/// Takes words starting with `--` off the front of `line`; `--` alone ends them.
fn extract_flags(line: &str, escape: char) -> (String, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let rest_at = |pos: usize| chars.get(pos).map_or("", |&(i, _)| &line[i..]).to_string();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut blank_ok = false;
    let mut pos = 0;
    loop {
        let ch = chars.get(pos).map(|&(_, c)| c);
        if phase == Phase::Spaces {
            let Some(ch) = ch else { break };
            if ch.is_whitespace() {
                pos += 1;
                continue;
            }
            let next_is_dash = chars.get(pos + 1).map(|&(_, c)| c) == Some('-');
            if ch != '-' || !next_is_dash {
                return (rest_at(pos), words);
            }
            phase = Phase::Word;
        }
        let Some(mut ch) = ch else {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        };
        match phase {
            Phase::Word => {
                if ch.is_whitespace() {
                    phase = Phase::Spaces;
                    if word == "--" {
                        return (rest_at(pos), words);
                    }
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    word.clear();
                    blank_ok = false;
                    pos += 1;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                    pos += 1;
                    continue;
                }
                if ch == escape {
                    pos += 1;
                    match chars.get(pos) {
                        Some(&(_, c)) => ch = c,
                        None => continue,
                    }
                }
                word.push(ch);
                pos += 1;
            }
            Phase::Quote(quote) => {
                if ch == quote {
                    phase = Phase::Word;
                    pos += 1;
                    continue;
                }
                if ch == escape {
                    pos += 1;
                    match chars.get(pos) {
                        Some(&(_, c)) => ch = c,
                        None => {
                            phase = Phase::Word;
                            continue;
                        }
                    }
                }
                word.push(ch);
                pos += 1;
            }
            Phase::Spaces => unreachable!("handled above"),
        }
    }
    (String::new(), words)
}

/// Splits ENV, LABEL and ARG arguments at unquoted whitespace, keeping quotes and escapes in
/// the words: they are removed later, when the words are expanded.
fn split_words(rest: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut quote: Option<char> = None;
    let mut in_word = false;
    let mut chars = rest.chars().peekable();
    while let Some(ch) = chars.next() {
        match quote {
            None => {
                if ch.is_whitespace() {
                    if in_word && (blank_ok || !word.is_empty()) {
                        words.push(std::mem::take(&mut word));
                    }
                    in_word = false;
                    blank_ok = false;
                    continue;
                }
                in_word = true;
                if ch == '\'' || ch == '"' {
                    quote = Some(ch);
                    blank_ok = true;
                }
                if ch == escape {
                    // Kept together with what it escapes; at the very end it is dropped.
                    let Some(next) = chars.next() else { continue };
                    word.push(ch);
                    word.push(next);
                    continue;
                }
                word.push(ch);
            }
            Some(q) => {
                if ch == q {
                    quote = None;
                }
                if ch == escape && q != '\'' {
                    let Some(next) = chars.next() else {
                        quote = None;
                        continue;
                    };
                    word.push(ch);
                    word.push(next);
                    continue;
                }
                word.push(ch);
            }
        }
    }
    if in_word && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

/// A JSON array of strings, Docker's exec form. Anything that is not valid JSON is `None`
/// (shell form); valid JSON holding something other than strings is an error.
fn json_array(args: &str) -> Result<Option<Vec<String>>, String> {
    let args = args.trim_start();
    if !args.starts_with('[') {
        return Ok(None);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(args) else {
        return Ok(None);
    };
    values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => {
                Err("when using JSON array syntax, arrays must be comprised of strings only".into())
            }
        })
        .collect::<Result<Vec<_>, String>>()
        .map(Some)
}

/// Only shell-form RUN, COPY and ADD (also behind ONBUILD) read heredoc bodies.
fn can_contain_heredoc(keyword: &str, args: &str, escape: char) -> Result<bool, String> {
    let (keyword, args) = if keyword.eq_ignore_ascii_case("onbuild") {
        let (sub, _, sub_args) = split_command(args, escape);
        (sub, sub_args)
    } else {
        (keyword.to_string(), args.to_string())
    };
    let keyword = keyword.to_ascii_lowercase();
    if !matches!(keyword.as_str(), "run" | "copy" | "add") {
        return Ok(false);
    }
    Ok(json_array(&args)?.is_none())
}

/// The heredocs a line names, in order (`<<EOF`, `<<-EOF`, `<<"EOF"`, `3<<EOF`).
fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, String> {
    let options = Options {
        raw_quotes: true,
        raw_escapes: true,
        skip_unset: true,
        ..Options::default()
    };
    let none = |_: &str| None::<String>;
    // A line Docker's lexer cannot read names no heredocs.
    let Ok((_, words)) = Lexer::default().run(line, &none, options) else {
        return Ok(Vec::new());
    };
    let mut docs = Vec::new();
    for word in words {
        if let Some(doc) = parse_heredoc(&word)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

/// Reads one word as a heredoc marker: `[digits]<<[-][blanks]word`, where the word holds no
/// `<` and lexes as exactly one word.
pub(crate) fn parse_heredoc(word: &str) -> Result<Option<Heredoc>, String> {
    let digits = word.bytes().take_while(u8::is_ascii_digit).count();
    let Some(rest) = word[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    let rest = rest.trim_start_matches(['\t', '\n', '\x0c', '\r', ' ']);
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let none = |_: &str| None::<String>;
    let lex = |raw_quotes| {
        let options = Options {
            raw_quotes,
            skip_unset: true,
            ..Options::default()
        };
        Lexer::default()
            .run(rest, &none, options)
            .map(|(_, words)| words)
            .map_err(|e| e.to_string())
    };
    let words = lex(false)?;
    let [name] = words.as_slice() else {
        return Ok(None);
    };
    let raw = lex(true)?;
    if raw.len() != words.len() {
        return Err(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        ));
    }
    let quotes = |s: &str| s.chars().filter(|c| matches!(c, '\'' | '"')).count();
    Ok(Some(Heredoc {
        name: name.clone(),
        content: String::new(),
        chomp,
        // Any quoting of the delimiter (its quotes vanish when lexed) turns expansion off.
        expand: quotes(name) == quotes(&raw[0]),
        fd: word[..digits].parse().unwrap_or(0),
    }))
}

fn exactly_one(args: &str, keyword: &str) -> Result<String, String> {
    if args.is_empty() {
        return Err(format!("{keyword} requires exactly one argument"));
    }
    Ok(args.to_string())
}

fn no_flags(flags: &[String]) -> Result<(), String> {
    Flags::parse(flags, &[]).map(|_| ())
}

/// ENV and LABEL: `k=v k2="v 2"`, or the legacy `k v` (everything after the key is the value).
fn key_values(args: &str, keyword: &str, escape: char) -> Result<Vec<KeyValue>, String> {
    let words = split_words(args, escape);
    let Some(first) = words.first() else {
        return Err(format!("{keyword} requires at least one argument"));
    };
    let pairs = if !first.contains('=') {
        let Some(at) = args.find(is_split_blank) else {
            return Err(format!("{keyword} must have two arguments"));
        };
        vec![KeyValue {
            key: args[..at].to_string(),
            value: args[at..].trim_start_matches(is_split_blank).to_string(),
        }]
    } else {
        words
            .iter()
            .map(|word| {
                let Some((key, value)) = word.split_once('=') else {
                    return Err(format!(
                        "Syntax error - can't find = in {word:?}. Must be of the form: name=value"
                    ));
                };
                Ok(KeyValue {
                    key: key.to_string(),
                    value: value.to_string(),
                })
            })
            .collect::<Result<Vec<_>, String>>()?
    };
    if pairs.iter().any(|kv| kv.key.is_empty()) {
        return Err(format!("{keyword} names can not be blank"));
    }
    Ok(pairs)
}

/// RUN, CMD, ENTRYPOINT: exec form when the arguments are a JSON array of strings.
fn command(args: &str) -> Result<Command, String> {
    Ok(match json_array(args)? {
        Some(argv) => Command::Exec(argv),
        None => Command::Shell(args.to_string()),
    })
}

/// COPY and ADD: sources (some maybe heredocs) and the destination.
fn sources_and_dest(
    args: &str,
    heredocs: &[Heredoc],
    keyword: &str,
) -> Result<(Vec<Source>, String), String> {
    let words = match json_array(args)? {
        Some(words) => words,
        None => split_blanks(args),
    };
    let Some((dest, sources)) = words.split_last().filter(|(_, s)| !s.is_empty()) else {
        return Err(format!(
            "{keyword} requires at least two arguments, but only one was provided. Destination \
             could not be determined"
        ));
    };
    if matches!(parse_heredoc(dest), Ok(Some(_))) {
        return Err(format!(
            "{keyword} cannot accept a heredoc as a destination"
        ));
    }
    let sources = sources
        .iter()
        .map(|word| match parse_heredoc(word) {
            Ok(Some(marker)) => {
                // The body was read for the line's heredoc of that name (the last, if twice).
                let content = heredocs
                    .iter()
                    .rev()
                    .find(|d| d.name == marker.name)
                    .map(|d| d.content.clone())
                    .unwrap_or_default();
                Source::Heredoc(Heredoc { content, ..marker })
            }
            _ => Source::Path(word.clone()),
        })
        .collect();
    Ok((sources, dest.clone()))
}

/// The second pass: one logical instruction to its typed form.
fn instruction(
    keyword: &str,
    flags: &[String],
    args: &str,
    heredocs: &[Heredoc],
    escape: char,
) -> Result<Instruction, String> {
    use Kind::{Bool, String as Str, Strings};
    Ok(match keyword.to_ascii_lowercase().as_str() {
        "from" => {
            let f = Flags::parse(flags, &[("platform", Str)])?;
            let words = split_blanks(args);
            let alias = match words.as_slice() {
                [_] => None,
                [_, kw, name] if kw.eq_ignore_ascii_case("as") => {
                    let name = name.to_lowercase();
                    let mut chars = name.chars();
                    let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
                        && chars.all(|c| {
                            c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c)
                        });
                    if !valid {
                        return Err(format!(
                            "invalid name for build stage: {:?}, name can't start with a number \
                             or contain symbols",
                            words[2]
                        ));
                    }
                    Some(name)
                }
                _ => return Err("FROM requires either one or three arguments".into()),
            };
            Instruction::From(From {
                image: words[0].clone(),
                platform: f.string("platform"),
                alias,
            })
        }
        "run" => {
            let f = Flags::parse(
                flags,
                &[
                    ("mount", Strings),
                    ("network", Str),
                    ("security", Str),
                    ("device", Strings),
                ],
            )?;
            if args.is_empty() {
                return Err("RUN requires at least one argument".into());
            }
            Instruction::Run(Run {
                command: command(args)?,
                heredocs: heredocs.to_vec(),
                mounts: f.strings("mount"),
                network: f.string("network"),
                security: f.string("security"),
                devices: f.strings("device"),
            })
        }
        "cmd" => {
            no_flags(flags)?;
            Instruction::Cmd(command(args)?)
        }
        "entrypoint" => {
            no_flags(flags)?;
            Instruction::Entrypoint(command(args)?)
        }
        "shell" => {
            no_flags(flags)?;
            match json_array(args)? {
                Some(argv) if argv.is_empty() => {
                    return Err("SHELL requires at least one argument".into())
                }
                Some(argv) => Instruction::Shell(argv),
                None if args.is_empty() => {
                    return Err("SHELL requires at least one argument".into())
                }
                None => return Err("SHELL requires the arguments to be in JSON form".into()),
            }
        }
        "copy" => {
            let f = Flags::parse(
                flags,
                &[
                    ("chown", Str),
                    ("from", Str),
                    ("chmod", Str),
                    ("link", Bool),
                    ("exclude", Strings),
                    ("parents", Bool),
                ],
            )?;
            let (sources, dest) = sources_and_dest(args, heredocs, "COPY")?;
            Instruction::Copy(Copy {
                sources,
                dest,
                from: f.non_empty("from"),
                chown: f.non_empty("chown"),
                chmod: f.non_empty("chmod"),
                link: f.bool("link").unwrap_or(false),
                parents: f.bool("parents").unwrap_or(false),
                excludes: f.strings("exclude"),
            })
        }
        "add" => {
            let f = Flags::parse(
                flags,
                &[
                    ("chown", Str),
                    ("chmod", Str),
                    ("link", Bool),
                    ("keep-git-dir", Bool),
                    ("checksum", Str),
                    ("unpack", Bool),
                    ("exclude", Strings),
                ],
            )?;
            let (sources, dest) = sources_and_dest(args, heredocs, "ADD")?;
            Instruction::Add(Add {
                sources,
                dest,
                chown: f.non_empty("chown"),
                chmod: f.non_empty("chmod"),
                link: f.bool("link").unwrap_or(false),
                keep_git_dir: f.bool("keep-git-dir"),
                checksum: f.non_empty("checksum"),
                unpack: f.bool("unpack"),
                excludes: f.strings("exclude"),
            })
        }
        "env" => {
            no_flags(flags)?;
            Instruction::Env(key_values(args, "ENV", escape)?)
        }
        "label" => {
            no_flags(flags)?;
            Instruction::Label(key_values(args, "LABEL", escape)?)
        }
        "arg" => {
            no_flags(flags)?;
            let words = split_words(args, escape);
            if words.is_empty() {
                return Err("ARG requires at least one argument".into());
            }
            let decls = words
                .into_iter()
                .map(|word| match word.split_once('=') {
                    Some(("", _)) => Err("ARG names can not be blank".to_string()),
                    Some((name, value)) => Ok(ArgDecl {
                        name: name.to_string(),
                        default: Some(value.to_string()),
                    }),
                    None => Ok(ArgDecl {
                        name: word,
                        default: None,
                    }),
                })
                .collect::<Result<_, _>>()?;
            Instruction::Arg(decls)
        }
        "expose" => {
            no_flags(flags)?;
            let ports = split_blanks(args);
            if ports.is_empty() {
                return Err("EXPOSE requires at least one argument".into());
            }
            Instruction::Expose(ports)
        }
        "volume" => {
            no_flags(flags)?;
            let paths = match json_array(args)? {
                Some(paths) => paths,
                None => split_blanks(args),
            };
            if paths.is_empty() {
                return Err("VOLUME requires at least one argument".into());
            }
            let paths = paths
                .into_iter()
                .map(|p| {
                    let p = p.trim().to_string();
                    if p.is_empty() {
                        return Err("VOLUME specified can not be an empty string".to_string());
                    }
                    Ok(p)
                })
                .collect::<Result<_, _>>()?;
            Instruction::Volume(paths)
        }
        "workdir" => {
            let path = exactly_one(args, "WORKDIR")?;
            no_flags(flags)?;
            Instruction::Workdir(path)
        }
        "user" => {
            let user = exactly_one(args, "USER")?;
            no_flags(flags)?;
            Instruction::User(user)
        }
        "stopsignal" => {
            let signal = exactly_one(args, "STOPSIGNAL")?;
            no_flags(flags)?;
            Instruction::StopSignal(signal)
        }
        "maintainer" => {
            let name = exactly_one(args, "MAINTAINER")?;
            no_flags(flags)?;
            Instruction::Maintainer(name)
        }
        "healthcheck" => healthcheck(flags, args)?,
        "onbuild" => {
            if args.is_empty() {
                return Err("ONBUILD requires at least one argument".into());
            }
            no_flags(flags)?;
            let (sub_keyword, sub_flags, sub_args) = split_command(args, escape);
            match sub_keyword.to_ascii_uppercase().as_str() {
                "ONBUILD" => {
                    return Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into())
                }
                k @ ("MAINTAINER" | "FROM") => {
                    return Err(format!("{k} isn't allowed as an ONBUILD trigger"))
                }
                _ => {}
            }
            let mut expression = args.to_string();
            for doc in heredocs {
                expression.push('\n');
                expression.push_str(&doc.content);
                expression.push_str(&doc.name);
            }
            let inner = instruction(&sub_keyword, &sub_flags, &sub_args, heredocs, escape)?;
            Instruction::Onbuild(Onbuild {
                expression,
                instruction: Box::new(inner),
            })
        }
        _ => return Err(format!("unknown instruction: {keyword}")),
    })
}

fn healthcheck(flags: &[String], args: &str) -> Result<Instruction, String> {
    use Kind::String as Str;
    let f = Flags::parse(
        flags,
        &[
            ("interval", Str),
            ("timeout", Str),
            ("start-period", Str),
            ("start-interval", Str),
            ("retries", Str),
        ],
    )?;
    let (kind, rest) = match args.find(char::is_whitespace) {
        Some(at) => (&args[..at], args[at..].trim_start()),
        None => (args, ""),
    };
    if kind.is_empty() {
        return Err("HEALTHCHECK requires at least one argument".into());
    }
    Ok(Instruction::Healthcheck(
        match kind.to_ascii_uppercase().as_str() {
            "NONE" => {
                if !rest.is_empty() {
                    return Err("HEALTHCHECK NONE takes no arguments".into());
                }
                Healthcheck::None
            }
            "CMD" => {
                let command = command(rest)?;
                let empty = match &command {
                    Command::Shell(s) => s.is_empty(),
                    Command::Exec(argv) => argv.is_empty(),
                };
                if empty {
                    return Err("Missing command after HEALTHCHECK CMD".into());
                }
                let retries = match f.string("retries").filter(|s| !s.is_empty()) {
                    None => None,
                    Some(text) => {
                        let n: i32 = text
                            .parse()
                            .map_err(|_| format!("invalid value for --retries: {text:?}"))?;
                        if n < 0 {
                            return Err(format!("--retries cannot be negative ({n})"));
                        }
                        u32::try_from(n).ok().filter(|&n| n > 0)
                    }
                };
                Healthcheck::Cmd(HealthcheckCmd {
                    command,
                    interval: f.interval("interval")?,
                    timeout: f.interval("timeout")?,
                    start_period: f.interval("start-period")?,
                    start_interval: f.interval("start-interval")?,
                    retries,
                })
            }
            other => return Err(format!("Unknown type {other:?} in HEALTHCHECK (try CMD)")),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_allow_blanks() {
        for line in [
            "#directive=value",
            "# directive =value",
            "#\tdirective= value",
            "# directive = value",
            "#\t  dIrEcTiVe=value",
        ] {
            let (k, v) = directive(line).unwrap();
            assert_eq!((k.to_ascii_lowercase().as_str(), v), ("directive", "value"));
        }
        assert_eq!(
            directive("# syntax=docker/dockerfile:1  "),
            Some(("syntax", "docker/dockerfile:1"))
        );
        assert_eq!(directive("# not a directive"), None);
        assert_eq!(directive("#1x=y"), None);
        assert_eq!(directive("# x="), None);
    }

    #[test]
    fn continuations() {
        assert_eq!(trim_continuation(r"a \", '\\'), ("a ", false));
        assert_eq!(trim_continuation("a \\  \t", '\\'), ("a ", false));
        assert_eq!(trim_continuation(r"\", '\\'), ("", false));
        assert_eq!(trim_continuation(r"c:\\", '\\'), (r"c:\\", true));
        assert_eq!(trim_continuation("a `", '`'), ("a ", false));
        assert_eq!(trim_continuation(r"a \", '`'), (r"a \", true));
    }

    #[test]
    fn flags_come_off_the_front() {
        let (k, f, a) = split_command("COPY --from=build --chown=\"a b\" src dst", '\\');
        assert_eq!(k, "COPY");
        assert_eq!(f, ["--from=build", "--chown=a b"]);
        assert_eq!(a, "src dst");
        let (_, f, a) = split_command("RUN -- --not-a-flag", '\\');
        assert!(f.is_empty());
        assert_eq!(a, "--not-a-flag");
        let (_, f, a) = split_command("RUN --network=none", '\\');
        assert_eq!(f, ["--network=none"]);
        assert_eq!(a, "");
        let (k, f, a) = split_command("  FROM  ", '\\');
        assert_eq!((k.as_str(), f.len(), a.as_str()), ("FROM", 0, ""));
    }

    #[test]
    fn words_keep_quotes() {
        assert_eq!(
            split_words(r#"a="x y" b=c\ d 'e f'"#, '\\'),
            [r#"a="x y""#, r"b=c\ d", "'e f'"]
        );
        assert_eq!(split_words(r#"k="" "#, '\\'), [r#"k="""#]);
        assert_eq!(split_words("end\\", '\\'), ["end"]);
    }

    #[test]
    fn heredoc_markers() {
        let h = parse_heredoc("<<EOF").unwrap().unwrap();
        assert_eq!(
            (h.name.as_str(), h.chomp, h.expand, h.fd),
            ("EOF", false, true, 0)
        );
        let h = parse_heredoc("<<-\"EOT\"").unwrap().unwrap();
        assert_eq!((h.name.as_str(), h.chomp, h.expand), ("EOT", true, false));
        let h = parse_heredoc("3<<'X'").unwrap().unwrap();
        assert_eq!((h.name.as_str(), h.expand, h.fd), ("X", false, 3));
        let h = parse_heredoc("<< EOF").unwrap().unwrap();
        assert_eq!(h.name, "EOF");
        assert!(parse_heredoc("<<").unwrap().is_none());
        assert!(parse_heredoc("a<<EOF").unwrap().is_none());
        assert!(parse_heredoc("<<EOF<").unwrap().is_none());
        assert!(parse_heredoc("\"<<EOF\"").unwrap().is_none());
    }

    #[test]
    fn json_or_not() {
        assert_eq!(
            json_array(r#"["a", "b"]"#).unwrap(),
            Some(vec!["a".into(), "b".into()])
        );
        assert_eq!(json_array("[ ]").unwrap(), Some(vec![]));
        assert_eq!(json_array("[a, b]").unwrap(), None);
        assert_eq!(json_array(r#"["a"] extra"#).unwrap(), None);
        assert_eq!(json_array("echo [1]").unwrap(), None);
        assert!(json_array(r#"["a", 1]"#).is_err());
    }
}
